//! Unit tests of [`super::WindowAggregator`]: absorbing batches, late and timeless rows, expressions, and emitting windows.

use super::*;
use crate::window::WindowConfig;
use edgeflow_engine::arrow::array::{Float64Array, StringArray};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::arrow::util::pretty::pretty_format_batches;
use edgeflow_engine::schema::{schema_with_event_time, timestamp_type};

fn input() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("temperature", DataType::Float64, true),
        ],
        Some("ts"),
    )
}

fn aggregator(group_by: &str) -> WindowAggregator {
    aggregator_of(
        group_by,
        "n = \"count()\", avg = \"mean(temperature)\", hi = \"max(temperature)\"",
    )
}

fn aggregator_of(group_by: &str, aggregates: &str) -> WindowAggregator {
    let text = format!("size = \"10ms\"\ngroup_by = {group_by}\naggregates = {{ {aggregates} }}");
    let config: WindowConfig = edgeflow_engine::parse_options(text.parse().unwrap()).unwrap();
    let plan = config.plan_window(&[input()]).unwrap();
    WindowAggregator::new(Arc::new(plan)).unwrap()
}

fn batch(rows: &[(Option<&str>, Option<i64>, Option<f64>)]) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<StringArray>()),
            Arc::new(
                rows.iter()
                    .map(|r| r.1)
                    .collect::<TimestampMillisecondArray>()
                    .with_timezone(UTC),
            ),
            Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
        ],
    )
    .unwrap()
}

/// Closes every window and pretty-prints the rows, window bounds as plain milliseconds
/// (Arrow's display of a "UTC" zone needs the chrono-tz feature, which we leave out).
fn drain(aggregator: &mut WindowAggregator) -> String {
    let mut batches = Vec::new();
    let starts: Vec<i64> = aggregator.pending().map(|(start, _)| start).collect();
    for batch in starts
        .into_iter()
        .filter_map(|start| aggregator.emit(start, Emission::Final).unwrap())
    {
        let mut columns = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for bound in 0..2 {
            columns[bound] = cast(&columns[bound], &DataType::Int64).unwrap();
            fields[bound] = Field::new(fields[bound].name(), DataType::Int64, false);
        }
        let schema = Arc::new(edgeflow_engine::arrow::datatypes::Schema::new(fields));
        batches.push(RecordBatch::try_new(schema, columns).unwrap());
    }
    pretty_format_batches(&batches).unwrap().to_string()
}

#[test]
fn rows_split_into_windows_and_late_rows_are_dropped() {
    let mut agg = aggregator("[\"device_id\"]");
    let mut opened = Vec::new();
    let absorbed = agg
        .absorb(
            &batch(&[
                (Some("b"), Some(3), Some(1.0)),
                (Some("a"), Some(12), Some(2.0)),
                (Some("b"), Some(5), Some(f64::NAN)),
                (None, None, Some(9.0)),
                (Some("a"), Some(17), None),
            ]),
            0,
            None,
            |start, _| opened.push(start),
        )
        .unwrap();
    assert_eq!(
        absorbed,
        Absorbed {
            on_time: 4,
            late: 0,
            missing_time: 1
        }
    );
    assert_eq!(opened, [0, 10]);
    assert_eq!(agg.groups(), 2);
    assert_eq!(agg.pending().next(), Some((0, 10)));

    // Watermark 12: window [0, 10) may be gone, so 3 and 9 are late; 10 and 15 are not.
    let absorbed = agg
        .absorb(
            &batch(&[
                (Some("a"), Some(3), Some(5.0)),
                (Some("a"), Some(9), Some(5.0)),
                (Some("c"), Some(10), Some(4.0)),
                (None, Some(15), Some(1.0)),
            ]),
            12,
            None,
            |start, _| opened.push(start),
        )
        .unwrap();
    assert_eq!(
        absorbed,
        Absorbed {
            on_time: 2,
            late: 2,
            missing_time: 0
        }
    );
    assert_eq!(opened, [0, 10]);
    assert_eq!(agg.groups(), 4);

    let expected = "\
+--------------+------------+-----------+---+-----+-----+
| window_start | window_end | device_id | n | avg | hi  |
+--------------+------------+-----------+---+-----+-----+
| 0            | 10         | b         | 2 | 1.0 | 1.0 |
| 10           | 20         |           | 1 | 1.0 | 1.0 |
| 10           | 20         | a         | 2 | 2.0 | 2.0 |
| 10           | 20         | c         | 1 | 4.0 | 4.0 |
+--------------+------------+-----------+---+-----+-----+";
    assert_eq!(drain(&mut agg), expected);
    assert_eq!(agg.groups(), 0);
    assert_eq!(agg.pending().next(), None);
}

#[test]
fn expressions_read_on_time_rows_only() {
    let mut agg = aggregator_of(
        "[\"device_id\"]",
        "hot = \"count_if(temperature > 2)\", f = \"mean(temperature * 2 + 1)\", \
         q = \"sum(10 / temperature)\"",
    );
    let mut opened = Vec::new();
    agg.absorb(
        &batch(&[
            (Some("a"), Some(12), Some(2.0)),
            (Some("a"), Some(13), Some(0.0)),
            (Some("b"), Some(14), None),
        ]),
        0,
        None,
        |start, _| opened.push(start),
    )
    .unwrap();
    // 10 / 0 is a runtime error (null); 10 / null is plain null.
    assert_eq!(agg.expression_errors(), [0, 0, 1]);
    // Watermark 12: the rows at 3 and 5 are late, and so is their division by zero; the
    // row without event time is dropped too.
    let absorbed = agg
        .absorb(
            &batch(&[
                (Some("a"), Some(3), Some(0.0)),
                (Some("a"), Some(15), Some(5.0)),
                (Some("b"), Some(5), Some(0.0)),
                (Some("b"), None, Some(0.0)),
                (Some("b"), Some(16), Some(f64::NAN)),
            ]),
            12,
            None,
            |start, _| opened.push(start),
        )
        .unwrap();
    assert_eq!((absorbed.on_time, absorbed.late), (2, 2));
    assert_eq!(agg.expression_errors(), [0, 0, 0]);
    assert_eq!(opened, [10]);
    // a: (5 + 1 + 11) / 3 and 10 / 2 + 10 / 5; b: NaN > 2 is true (Arrow's total order),
    // and the NaN of 10 / NaN is skipped like a NaN field value.
    let expected = "\
+--------------+------------+-----------+-----+-------------------+-----+
| window_start | window_end | device_id | hot | f                 | q   |
+--------------+------------+-----------+-----+-------------------+-----+
| 10           | 20         | a         | 1   | 5.666666666666667 | 7.0 |
| 10           | 20         | b         | 1   |                   |     |
+--------------+------------+-----------+-----+-------------------+-----+";
    assert_eq!(drain(&mut agg), expected);
}

#[test]
fn ungrouped_window_and_many_windows_in_one_batch() {
    let mut agg = aggregator("[]");
    let rows: Vec<_> = (0..100)
        .rev()
        .map(|t| (Some("x"), Some(t * 7), Some(t as f64)))
        .collect();
    let mut opened = Vec::new();
    agg.absorb(&batch(&rows), 0, None, |s, _| opened.push(s))
        .unwrap();
    assert_eq!(opened.len(), 70);
    assert_eq!(agg.groups(), 70);
    let mut total = 0;
    let starts: Vec<i64> = agg.pending().map(|(start, _)| start).collect();
    for start in starts {
        let batch = agg.emit(start, Emission::Final).unwrap().unwrap();
        assert_eq!(batch.num_rows(), 1);
        let n = batch
            .column(2)
            .as_primitive::<edgeflow_engine::arrow::datatypes::Int64Type>()
            .value(0);
        let expected = (0..100).filter(|t| t * 7 / 10 * 10 == start).count() as i64;
        assert_eq!(n, expected, "window {start}");
        total += n;
    }
    assert_eq!(total, 100);
}

#[test]
fn negative_event_times_are_late_at_watermark_zero() {
    let mut agg = aggregator("[]");
    let absorbed = agg
        .absorb(
            &batch(&[
                (Some("a"), Some(-5), Some(1.0)),
                (Some("a"), Some(0), Some(1.0)),
            ]),
            0,
            None,
            |_, _| {},
        )
        .unwrap();
    assert_eq!(absorbed.late, 1);
    assert_eq!(absorbed.on_time, 1);
}
