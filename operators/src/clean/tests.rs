//! Unit tests of `clean`: option checks with their paths, and every rule on hand-made
//! batches through [`Clean::apply`].

use super::*;
use edgeflow_engine::arrow::array::{
    Float32Array, Float64Array, Int32Array, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Float64Type, Int32Type};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};

fn schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), false),
            Field::new("temperature", DataType::Float64, true),
            Field::new("humidity", DataType::Float32, true),
            Field::new("level", DataType::Int32, true),
            Field::new("status", DataType::Utf8, true),
            Field::new("reported", DataType::Utf8, true),
            Field::new("scale", DataType::Float64, true),
        ],
        Some("ts"),
    )
}

fn config(text: &str) -> Result<CleanConfig, OptionError> {
    parse_options(text.parse::<toml::Table>().unwrap())
}

fn plan_errors(text: &str) -> Vec<(String, String, Option<String>)> {
    config(text)
        .unwrap()
        .build(&[schema()])
        .unwrap_err()
        .into_iter()
        .map(|e| (e.path.join("."), e.message, e.hint))
        .collect()
}

fn clean(text: &str) -> Clean {
    config(text).unwrap().build(&[schema()]).unwrap()
}

/// One row: device, ts, temperature, humidity, level.
#[derive(Clone)]
struct Row {
    device: &'static str,
    ts: i64,
    temperature: Option<f64>,
    humidity: Option<f32>,
    level: Option<i32>,
    status: Option<&'static str>,
    reported: Option<&'static str>,
    scale: Option<f64>,
}

fn row(device: &'static str, ts: i64, temperature: Option<f64>) -> Row {
    Row {
        device,
        ts,
        temperature,
        humidity: Some(50.0),
        level: Some(1),
        status: None,
        reported: None,
        scale: None,
    }
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(rows.iter().map(|r| Some(r.device)).collect::<StringArray>()),
            Arc::new(
                TimestampMillisecondArray::from(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
                    .with_timezone(UTC),
            ),
            Arc::new(rows.iter().map(|r| r.temperature).collect::<Float64Array>()),
            Arc::new(rows.iter().map(|r| r.humidity).collect::<Float32Array>()),
            Arc::new(rows.iter().map(|r| r.level).collect::<Int32Array>()),
            Arc::new(rows.iter().map(|r| r.status).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| r.reported).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| r.scale).collect::<Float64Array>()),
        ],
    )
    .unwrap()
}

fn run(clean: &Clean, rows: &[Row]) -> CleanOutcome {
    let mut state = clean.new_state().unwrap();
    clean.apply(batch(rows), 0, &mut state).unwrap()
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    cast(batch.column_by_name(name).unwrap(), &DataType::Float64)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

#[test]
fn query_file_example_parses_and_plans() {
    let text = "key = [\"device_id\"]\n\
                timestamps = { reported = { formats = [\"rfc3339\", \"epoch\"] } }\n\
                normalize = { status = { trim = true, case = \"lower\", map = { \"1\" = \"on\" } } }\n\
                convert = { temperature = { from = \"degF\", to = \"degC\" } }\n\
                drop_null = [\"device_id\"]\n\
                drop_outside = { temperature = [-40.0, 125.0] }\n\
                clip = { humidity = [0.0, 100.0] }\n\
                dedup = { horizon = \"10m\" }\n\
                max_rate_of_change = { temperature = 2.0 }\n\
                fill = { humidity = { method = \"previous\", max_gap = \"5m\" } }";
    let clean = clean(text);
    let out = clean.output_schema();
    assert_eq!(out.field(6).data_type(), &timestamp_type());
    assert_eq!(out.field(2).data_type(), &DataType::Float64);
    assert_eq!(out.fields().last().unwrap().name(), "humidity_filled");
    assert_eq!(out.metadata(), schema().metadata());
    let side = clean.side_outputs();
    assert_eq!(side[0].0, "rejected");
    assert_eq!(side[0].1.fields().last().unwrap().name(), "reason");
    assert_eq!(side[0].1.fields().len(), schema().fields().len() + 1);
}

#[test]
fn null_and_nan_are_dropped_by_drop_null_with_a_reason_per_field() {
    let clean = clean("drop_null = [\"temperature\", \"humidity\"]");
    let mut rows = vec![
        row("a", 1, Some(1.0)),
        row("a", 2, None),
        row("a", 3, Some(f64::NAN)),
        row("a", 4, Some(4.0)),
        row("a", 5, Some(5.0)),
    ];
    rows[3].humidity = Some(f32::NAN);
    rows[4].humidity = None;
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.dropped, [("null_field", 4)]);
    assert_eq!(floats(&outcome.rows.unwrap(), "temperature"), [Some(1.0)]);
    let rejected = outcome.rejected.unwrap();
    assert_eq!(
        texts(&rejected, "reason"),
        [
            Some("null_field:temperature".into()),
            Some("null_field:temperature".into()),
            Some("null_field:humidity".into()),
            Some("null_field:humidity".into()),
        ]
    );
    // Rejected rows leave as they arrived.
    assert_eq!(floats(&rejected, "temperature")[3], Some(5.0));
}

#[test]
fn range_bounds_are_inclusive_nulls_pass_and_integers_compare_exactly() {
    let clean = clean("drop_outside = { temperature = [-40.0, 125.0], level = [0.5, 3.5] }");
    let mut rows: Vec<Row> = [
        Some(-40.0),
        Some(125.0),
        Some(-40.000001),
        Some(125.5),
        None,
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(20.0),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, t)| row("a", i as i64, t))
    .collect();
    rows[7].level = Some(4);
    rows[1].level = None;
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.dropped, [("out_of_range", 4)]);
    let kept = floats(&outcome.rows.unwrap(), "temperature");
    assert_eq!(kept[..3], [Some(-40.0), Some(125.0), None]);
    assert!(kept[3].unwrap().is_nan());
    let reasons = texts(&outcome.rejected.unwrap(), "reason");
    assert_eq!(
        reasons.last().unwrap().as_deref(),
        Some("out_of_range:level")
    );
}

#[test]
fn each_rejected_row_counts_once_under_its_first_rule() {
    let clean = clean(
        "drop_null = [\"temperature\"]\n\
         drop_outside = { temperature = [0, 10], humidity = [0, 100] }",
    );
    let mut rows = vec![
        row("a", 1, None),
        row("a", 2, Some(50.0)),
        row("a", 3, Some(5.0)),
    ];
    rows[0].humidity = Some(500.0);
    rows[1].humidity = Some(500.0);
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.dropped, [("null_field", 1), ("out_of_range", 1)]);
    assert_eq!(
        texts(&outcome.rejected.unwrap(), "reason"),
        [
            Some("null_field:temperature".into()),
            Some("out_of_range:temperature".into())
        ]
    );
}

#[test]
fn clean_batches_pass_through_without_copies() {
    let clean = clean("drop_null = [\"temperature\"]");
    let input = batch(&[row("a", 1, Some(1.0)), row("a", 2, Some(2.0))]);
    let mut state = clean.new_state().unwrap();
    let outcome = clean.apply(input.clone(), 0, &mut state).unwrap();
    let out = outcome.rows.unwrap();
    assert!(Arc::ptr_eq(out.column(2), input.column(2)));
    assert!(outcome.rejected.is_none());
    let outcome = run(&clean, &[row("a", 1, None)]);
    assert!(outcome.rows.is_none());
}

#[test]
fn clip_clamps_and_counts() {
    let clean = clean("clip = { temperature = [0, 10], level = [0, 2] }");
    let mut rows = vec![
        row("a", 1, Some(-5.0)),
        row("a", 2, Some(5.0)),
        row("a", 3, Some(50.0)),
        row("a", 4, None),
    ];
    rows[0].level = Some(7);
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.changed("clipped"), 3);
    let out = outcome.rows.unwrap();
    assert_eq!(
        floats(&out, "temperature"),
        [Some(0.0), Some(5.0), Some(10.0), None]
    );
    assert_eq!(out.column(4).as_primitive::<Int32Type>().value(0), 2);
    assert!(outcome.dropped.is_empty());
}

#[test]
fn strings_are_trimmed_cased_and_mapped() {
    let clean = clean(
        "normalize = { status = { trim = true, case = \"lower\", \
         map = { \"1\" = \"on\", \"0\" = \"off\", \"true\" = \"on\" } } }",
    );
    let statuses = [Some(" ON "), Some("1"), Some("TRUE"), None, Some("Off ")];
    let rows: Vec<Row> = statuses
        .iter()
        .map(|s| Row {
            status: *s,
            ..row("a", 1, Some(1.0))
        })
        .collect();
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.changed("mapped"), 2);
    let got = texts(&outcome.rows.unwrap(), "status");
    let want: Vec<Option<String>> = ["on", "on", "on"]
        .iter()
        .map(|s| Some(s.to_string()))
        .chain([None, Some("off".to_string())])
        .collect();
    assert_eq!(got, want);
}

#[test]
fn timestamps_parse_in_place_or_into_a_new_column() {
    let reported = [
        Some("2023-01-01T10:00:00Z"),
        Some("1672567200"),
        Some("01-Jan-2023 10:00:00"),
        Some("soon"),
        None,
    ];
    let rows: Vec<Row> = reported
        .iter()
        .map(|r| Row {
            reported: *r,
            ..row("a", 1, Some(1.0))
        })
        .collect();
    let clean_in_place = clean("timestamps = { reported = {} }");
    let outcome = run(&clean_in_place, &rows);
    assert_eq!(outcome.dropped, [("bad_timestamp", 1)]);
    let out = outcome.rows.unwrap();
    let times: Vec<Option<i64>> = out
        .column(6)
        .as_primitive::<TimestampMillisecondType>()
        .iter()
        .collect();
    let t = 1_672_567_200_000;
    assert_eq!(times, [Some(t), Some(t), Some(t), None]);
    let rejected = outcome.rejected.unwrap();
    assert_eq!(texts(&rejected, "reported"), [Some("soon".into())]);
    assert_eq!(
        texts(&rejected, "reason"),
        [Some("bad_timestamp:reported".into())]
    );

    let clean_into = clean(
        "timestamps = { reported = { formats = [\"iso8601\", \"rfc3339\"], \
         timezone = \"Europe/Berlin\", into = \"reported_at\" } }",
    );
    let rows = [Row {
        reported: Some("2023-01-01 11:00"),
        ..row("a", 1, Some(1.0))
    }];
    let out = run(&clean_into, &rows).rows.unwrap();
    assert_eq!(out.schema().fields().last().unwrap().name(), "reported_at");
    assert_eq!(
        out.column(8)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        t
    );
    assert_eq!(texts(&out, "reported"), [Some("2023-01-01 11:00".into())]);
}

#[test]
fn units_convert_before_ranges_are_checked() {
    let clean = clean(
        "convert = { temperature = { from = \"degF\", to = \"degC\" }, \
         level = { from = \"mV\", to = \"V\" } }\n\
         drop_outside = { temperature = [-40, 60] }",
    );
    let rows = [
        row("a", 1, Some(212.0)),
        row("a", 2, Some(32.0)),
        row("a", 3, Some(-40.0)),
    ];
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.dropped, [("out_of_range", 1)]);
    let out = outcome.rows.unwrap();
    assert_eq!(floats(&out, "temperature"), [Some(0.0), Some(-40.0)]);
    assert_eq!(out.schema().field(4).data_type(), &DataType::Float64);
    assert_eq!(floats(&out, "level"), [Some(0.001), Some(0.001)]);
    // The rejected row is the Fahrenheit reading as it arrived.
    assert_eq!(
        floats(&outcome.rejected.unwrap(), "temperature"),
        [Some(212.0)]
    );
}

#[test]
fn calibration_by_number_or_per_device_field() {
    let fixed = clean("calibrate = { temperature = { scale = 2.0, offset = -1.0 } }");
    let out = run(&fixed, &[row("a", 1, Some(10.0))]).rows.unwrap();
    assert_eq!(floats(&out, "temperature"), [Some(19.0)]);

    let per_device = clean("calibrate = { temperature = { scale = \"scale\", offset = 0.5 } }");
    let rows = [
        Row {
            scale: Some(1.1),
            ..row("a", 1, Some(10.0))
        },
        row("b", 1, Some(10.0)),
    ];
    let outcome = run(&per_device, &rows);
    assert_eq!(outcome.changed("uncalibrated"), 1);
    let got = floats(&outcome.rows.unwrap(), "temperature");
    assert!((got[0].unwrap() - 11.5).abs() < 1e-12);
    assert_eq!(got[1], Some(10.5));
}

#[test]
fn dedup_rate_and_fill_work_per_key_in_arrival_order() {
    let clean = clean(
        "key = [\"device_id\"]\n\
         dedup = { on = [\"device_id\", \"ts\", \"temperature\"], horizon = \"1m\" }\n\
         max_rate_of_change = { temperature = 1.0 }\n\
         fill = { humidity = { method = \"previous\", max_gap = \"10s\" } }",
    );
    let mut rows = vec![
        row("a", 1_000, Some(20.0)),
        row("a", 1_000, Some(20.0)),  // duplicate
        row("b", 1_000, Some(20.0)),  // another key
        row("a", 2_000, Some(30.0)),  // +10 in 1 s: too fast
        row("a", 3_000, Some(21.5)),  // +1.5 in 2 s: fine
        row("a", 5_000, Some(21.5)),  // humidity missing: filled from 3 s
        row("a", 20_000, Some(21.5)), // humidity missing, 15 s after: unfilled
    ];
    rows[4].humidity = Some(42.0);
    rows[5].humidity = None;
    rows[6].humidity = None;
    let outcome = run(&clean, &rows);
    assert_eq!(outcome.dropped, [("duplicate", 1), ("rate_of_change", 1)]);
    assert_eq!(outcome.changed("filled"), 1);
    assert_eq!(outcome.changed("unfilled"), 1);
    let out = outcome.rows.unwrap();
    assert_eq!(
        floats(&out, "humidity"),
        [Some(50.0), Some(50.0), Some(42.0), Some(42.0), None]
    );
    let marks: Vec<bool> = out
        .column_by_name("humidity_filled")
        .unwrap()
        .as_boolean()
        .iter()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(marks, [false, false, false, true, false]);
    assert_eq!(
        texts(&outcome.rejected.unwrap(), "reason"),
        [
            Some("duplicate".into()),
            Some("rate_of_change:temperature".into())
        ]
    );
}

#[test]
fn dedup_state_expires_with_the_watermark() {
    let clean = clean("dedup = { on = [\"device_id\", \"ts\"], horizon = \"10s\" }");
    let mut state = clean.new_state().unwrap();
    let first = clean
        .apply(batch(&[row("a", 1_000, Some(1.0))]), 0, &mut state)
        .unwrap();
    assert!(first.rejected.is_none());
    // Watermark 11 s: the row of 1 s is still remembered (1 s + 10 s ≥ 11 s).
    let again = clean
        .apply(batch(&[row("a", 1_000, Some(1.0))]), 11_000, &mut state)
        .unwrap();
    assert_eq!(again.dropped, [("duplicate", 1)]);
    // Watermark 11.001 s: forgotten; a redelivery this late cannot be checked.
    let late = clean
        .apply(batch(&[row("a", 1_000, Some(1.0))]), 11_001, &mut state)
        .unwrap();
    assert!(late.rejected.is_none());
    assert_eq!(late.changed("dedup_unchecked"), 1);
    // Memory is reclaimed in sweeps every quarter of the horizon (the last was at 11 s).
    let keyed = state.keyed.as_mut().unwrap();
    keyed.expire(13_499);
    assert_eq!(keyed.entries(), 1);
    keyed.expire(13_500);
    assert_eq!(keyed.entries(), 0);
}

#[test]
fn mean_and_constant_fill() {
    let clean = clean(
        "key = [\"device_id\"]\n\
         fill = { temperature = { method = \"mean\", last = 2, max_gap = \"1m\" }, \
         level = { method = \"constant\", value = -1 } }",
    );
    let mut rows = vec![
        row("a", 1_000, Some(10.0)),
        row("a", 2_000, Some(20.0)),
        row("a", 3_000, Some(40.0)),
        row("a", 4_000, None),
    ];
    rows[3].level = None;
    let out = run(&clean, &rows).rows.unwrap();
    assert_eq!(floats(&out, "temperature")[3], Some(30.0));
    assert_eq!(floats(&out, "level")[3], Some(-1.0));
    assert_eq!(out.schema().field(4).data_type(), &DataType::Int32);
}

#[test]
fn every_bad_option_is_reported_with_its_path_and_hint() {
    let errors = plan_errors(
        "drop_null = [\"temprature\", \"device_id\"]\n\
         drop_outside = { device_id = [0, 1], humidty = [0, 100], temperature = [125, -40] }",
    );
    assert_eq!(
        errors,
        [
            (
                "drop_null.0".to_string(),
                "'temprature' is not a field of the input".to_string(),
                Some("did you mean 'temperature'?".to_string()),
            ),
            (
                "drop_outside.device_id".to_string(),
                "cannot check the range of string field 'device_id'".to_string(),
                Some("drop_outside takes numeric (int or float) fields".to_string()),
            ),
            (
                "drop_outside.humidty".to_string(),
                "'humidty' is not a field of the input".to_string(),
                Some("did you mean 'humidity'?".to_string()),
            ),
            (
                "drop_outside.temperature".to_string(),
                "empty range [125, -40] for 'temperature': min is above max".to_string(),
                Some("did you mean [-40, 125]?".to_string()),
            ),
        ]
    );
}

#[test]
fn new_rules_report_their_option_paths() {
    let paths =
        |text: &str| -> Vec<String> { plan_errors(text).into_iter().map(|e| e.0).collect() };
    assert_eq!(
        paths("convert = { temperature = { from = \"degF\", to = \"psi\" } }"),
        ["convert.temperature"]
    );
    let errors = plan_errors("convert = { temperature = { from = \"degf\", to = \"degC\" } }");
    assert_eq!(errors[0].0, "convert.temperature.from");
    assert_eq!(errors[0].2.as_deref(), Some("did you mean 'degF'?"));
    assert_eq!(
        paths("timestamps = { reported = { formats = [\"rfc822\"], timezone = \"Mars/Base\" } }"),
        [
            "timestamps.reported.formats.0",
            "timestamps.reported.timezone"
        ]
    );
    assert_eq!(
        paths("normalize = { level = { trim = true } }"),
        ["normalize.level"]
    );
    assert_eq!(
        paths("normalize = { status = { case = \"title\" } }"),
        ["normalize.status.case"]
    );
    assert_eq!(
        paths("key = [\"status\"]\nnormalize = { status = { trim = true } }\ndedup = {}"),
        ["key.0"]
    );
    assert_eq!(
        paths("key = [\"device_id\"]\ndedup = { on = [\"ts\"] }"),
        ["dedup.on"]
    );
    assert_eq!(
        paths("fill = { temperature = { method = \"spline\" } }"),
        ["fill.temperature.method"]
    );
    assert_eq!(
        paths("fill = { status = {} }\nmax_rate_of_change = { temperature = -1 }"),
        ["max_rate_of_change.temperature", "fill.status"]
    );
    assert_eq!(
        paths("drop_null = [\"temperature\"]\nfill = { temperature = {} }"),
        ["fill.temperature"]
    );
    assert_eq!(
        paths("calibrate = { temperature = { scale = \"status\" } }"),
        ["calibrate.temperature.scale"]
    );
    assert_eq!(
        paths("key = [\"device_id\"]\nclip = { level = [0, 1] }"),
        ["key"]
    );
    assert_eq!(paths("dedup = { horizon = \"0s\" }"), ["dedup.horizon"]);
}

#[test]
fn structural_errors_come_from_parsing() {
    let error = config("drop_nul = [\"temperature\"]").unwrap_err();
    assert!(error.message.contains("drop_nul"), "{}", error.message);
    let error = config("drop_outside = { temperature = [1.0] }").unwrap_err();
    assert_eq!(error.path, ["drop_outside", "temperature"]);
    let error = config("dedup = { horizon = \"soon\" }").unwrap_err();
    assert_eq!(error.path, ["dedup", "horizon"]);
    assert!(error.message.contains("'soon'"), "{}", error.message);
}

#[test]
fn no_rule_or_wrong_input_count_is_an_error() {
    let errors = plan_errors("");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("at least one rule"));
    let config = config("drop_null = [\"temperature\"]").unwrap();
    let errors = config.plan(&[schema(), schema()]).unwrap_err();
    assert_eq!(errors[0].path, ["inputs"]);
}

#[test]
fn exchange_follows_the_key_or_the_unchanged_dedup_fields() {
    let plan = |text: &str| clean(text).plan.exchange.clone();
    assert_eq!(plan("drop_null = [\"temperature\"]"), None);
    assert_eq!(
        plan("key = [\"device_id\"]\nfill = { temperature = {} }"),
        Some(vec![0])
    );
    assert_eq!(
        plan(
            "normalize = { status = { trim = true } }\ndedup = { on = [\"device_id\", \"status\"] }"
        ),
        Some(vec![0])
    );
    assert_eq!(
        plan("max_rate_of_change = { temperature = 1 }"),
        Some(vec![])
    );
}

#[test]
fn linear_fill_holds_rows_until_the_next_reading_or_the_watermark() {
    let clean = clean(
        "key = [\"device_id\"]\n\
         fill = { temperature = { method = \"linear\", max_gap = \"10s\" }, \
         level = { method = \"linear\", max_gap = \"10s\", max_held = 2 } }",
    );
    let mut state = clean.new_state().unwrap();
    let mut rows = vec![
        row("a", 1_000, Some(10.0)),
        row("a", 2_000, None), // waits for both fields
        row("a", 3_000, None),
        row("b", 1_000, None), // no reading of b before it: unfilled at once
    ];
    rows[0].level = Some(1);
    rows[1].level = None;
    rows[2].level = None;
    let first = clean.apply(batch(&rows), 0, &mut state).unwrap();
    assert_eq!(first.rows.as_ref().unwrap().num_rows(), 2);
    assert!(first.released.is_empty());
    assert_eq!(state.held_rows(), 2);
    assert_eq!(state.held_stamps(), [0]);
    assert_eq!(first.changed("unfilled"), 1);

    let mut next = row("a", 5_000, Some(50.0));
    next.level = Some(5);
    let second = clean.apply(batch(&[next]), 500, &mut state).unwrap();
    assert_eq!(second.rows.as_ref().unwrap().num_rows(), 1);
    let [(stamp, released)] = &second.released[..] else {
        panic!("one released batch expected, got {:?}", second.released);
    };
    assert_eq!(*stamp, 0, "held rows keep the timestamp of their batch");
    assert_eq!(floats(released, "temperature"), [Some(20.0), Some(30.0)]);
    assert_eq!(floats(released, "level"), [Some(2.0), Some(3.0)]);
    let marks = |b: &RecordBatch, name: &str| -> Vec<bool> {
        b.column_by_name(name)
            .unwrap()
            .as_boolean()
            .iter()
            .map(|m| m.unwrap())
            .collect()
    };
    assert_eq!(marks(released, "temperature_filled"), [true, true]);
    assert_eq!(marks(released, "level_filled"), [true, true]);
    assert_eq!(second.changed("filled"), 4);
    assert_eq!(state.held_rows(), 0);

    // No reading within 10 s after 6 s: the row leaves unfilled once the watermark passes 16 s.
    let third = clean
        .apply(batch(&[row("a", 6_000, None)]), 1_000, &mut state)
        .unwrap();
    assert!(third.rows.is_none());
    let (released, changed) = clean.advance(Some(16_000), &mut state).unwrap();
    assert!(released.is_empty() && changed.is_empty());
    let (released, changed) = clean.advance(Some(16_001), &mut state).unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].0, 1_000);
    assert_eq!(floats(&released[0].1, "temperature"), [None]);
    assert_eq!(changed, [("unfilled", 1)]);

    // Past max_held (2 for level), the oldest held row leaves unfilled at once.
    let mut rows = vec![row("c", 1_000, Some(1.0)), row("c", 2_000, Some(1.0))];
    rows[0].level = Some(1);
    for ts in [3_000, 4_000, 5_000] {
        let mut r = row("c", ts, Some(1.0));
        r.level = None;
        rows.push(r);
    }
    let outcome = clean.apply(batch(&rows), 2_000, &mut state).unwrap();
    assert_eq!(outcome.changed("fill_overflow"), 1);
    assert_eq!(outcome.released.len(), 1);
    assert_eq!(floats(&outcome.released[0].1, "level"), [None]);
    assert_eq!(state.held_rows(), 2);
    // The end of the input lets the rest go, unfilled.
    let (released, changed) = clean.advance(None, &mut state).unwrap();
    assert_eq!(released.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 2);
    assert_eq!(changed, [("unfilled", 2)]);
    assert_eq!(state.held_rows(), 0);
}
