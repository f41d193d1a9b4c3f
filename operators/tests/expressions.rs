//! The `filter` and `derive` operators inside an engine run, on one and two workers, plus an
//! ignored throughput test of `filter`:
//!
//! ```sh
//! cargo test --release -p edgeflow-operators -- --ignored --nocapture filter_throughput
//! ```

use std::sync::Arc;
use std::time::Instant;

use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema};
use edgeflow_engine::testing::run_collect;
use edgeflow_operators::filter::FilterConfig;

use crate::util::{Reading, Value, batch, plan, rows, sensor_schema};

fn input() -> Vec<RecordBatch> {
    let mut first = vec![
        Reading::new("a", 1, Some(20.0)),
        Reading::new("test", 2, Some(25.0)),
        Reading::new("b", 3, None),
        Reading::new("c", 4, Some(-5.0)),
    ];
    first[0].level = Some(4);
    first[3].level = Some(0);
    let mut second = vec![
        Reading::new("d", 5, Some(30.0)),
        Reading::new("e", 6, Some(1.0)),
        Reading::new("f", 7, Some(2.0)),
    ];
    second[0].level = Some(0);
    second[1].device = None;
    second[2].level = Some(2);
    vec![batch(&first), batch(&second)]
}

/// Output rows sorted by event time (two workers may interleave batches).
fn sorted(out: &[RecordBatch]) -> Vec<Vec<Value>> {
    let mut rows = rows(out);
    rows.sort_by(|a, b| a[3].cmp(&b[3]));
    rows
}

#[test]
fn filter_keeps_true_rows_and_counts_on_one_and_two_workers() {
    for workers in [1, 2] {
        let schema = sensor_schema();
        let filter = plan(
            "filter",
            "where = \"temperature > 0 and (device_id != 'test' or device_id is null) \
             and coalesce(100 / level, 1) > 0\"",
            &schema,
        );
        assert_eq!(filter.output_schema(), schema);
        let (out, report) = run_collect(
            schema,
            input(),
            WatermarkPolicy::default(),
            vec![filter],
            workers,
        )
        .unwrap();
        let kept: Vec<Value> = sorted(&out).into_iter().map(|r| r[3].clone()).collect();
        // ts 2: test device; 3: null temperature; 4: negative. ts 5 divides by zero, but
        // coalesce turns the null into 1.
        assert_eq!(
            kept,
            [Value::Int(1), Value::Int(5), Value::Int(6), Value::Int(7)],
            "workers = {workers}"
        );
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.rows_in, 7);
        assert_eq!(node.rows_out, 4);
        assert_eq!(node.dropped.get("filtered"), Some(&3));
        assert_eq!(node.dropped.get("expression_error"), Some(&2));
    }
}

#[test]
fn derive_appends_and_replaces_columns_on_one_and_two_workers() {
    for workers in [1, 2] {
        let schema = sensor_schema();
        let derive = plan(
            "derive",
            "columns = { level = \"coalesce(level, -1)\", \
             label = \"concat(upper(device_id), ':', round(temperature))\", \
             ratio = \"temperature / level\" }",
            &schema,
        );
        let out_schema = derive.output_schema();
        let names: Vec<&str> = out_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "device_id",
                "zone",
                "flag",
                "ts",
                "temperature",
                "level",
                "label",
                "ratio"
            ]
        );
        assert_eq!(out_schema.metadata(), schema.metadata());
        let (out, report) = run_collect(
            schema,
            input(),
            WatermarkPolicy::default(),
            vec![derive],
            workers,
        )
        .unwrap();
        let rows = sorted(&out);
        assert_eq!(rows.len(), 7);
        let level: Vec<Value> = rows.iter().map(|r| r[5].clone()).collect();
        assert_eq!(
            level,
            [4, -1, -1, 0, 0, -1, 2].map(Value::Int),
            "workers = {workers}"
        );
        assert_eq!(rows[0][6], Value::Str("A:20.0".into()));
        assert_eq!(rows[2][6], Value::Null);
        assert_eq!(rows[5][6], Value::Null);
        // `ratio` reads the input level (null stays null; 0 is a division by zero).
        assert_eq!(rows[0][7], Value::Float(5.0));
        assert_eq!(rows[1][7], Value::Null);
        assert_eq!(rows[3][7], Value::Null);
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!((node.rows_in, node.rows_out), (7, 7));
        assert_eq!(node.dropped.get("expression_error"), Some(&2));
    }
}

#[test]
fn filter_then_derive_chain() {
    let schema = sensor_schema();
    let filter = plan("filter", "where = \"temperature is not null\"", &schema);
    let derive = plan(
        "derive",
        "columns = { fahrenheit = \"temperature * 9 / 5 + 32\" }",
        &filter.output_schema(),
    );
    let (out, _) = run_collect(
        schema,
        input(),
        WatermarkPolicy::default(),
        vec![filter, derive],
        2,
    )
    .unwrap();
    let rows = sorted(&out);
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0][6], Value::Float(68.0));
}

/// Three comparisons over 10 M rows (a float range and a string inequality), through
/// `Filter::apply` on one core.
#[test]
#[ignore = "throughput measurement; run in release mode"]
fn filter_throughput() {
    const ROWS: usize = 10_000_000;
    const BATCH: usize = 8192;
    let schema = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("temperature", DataType::Float64, true),
        Field::new("level", DataType::Int64, true),
    ]));
    let devices = ["dev-0001", "test", "dev-0002", "dev-0003"];
    let batches: Vec<RecordBatch> = (0..ROWS.div_ceil(BATCH))
        .map(|b| {
            let n = BATCH.min(ROWS - b * BATCH);
            let start = b * BATCH;
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| devices[(start + i) % devices.len()]),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        (0..n).map(|i| ((start + i) % 200) as f64 - 50.0),
                    )),
                    Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64))),
                ],
            )
            .unwrap()
        })
        .collect();
    let filter = FilterConfig {
        condition: "temperature > 0 and temperature < 100 and device_id != 'test'".into(),
    }
    .build(&[schema])
    .unwrap();
    let started = Instant::now();
    let mut kept = 0;
    for rows in batches {
        if let Some(rows) = filter.apply(rows).unwrap().rows {
            kept += rows.num_rows();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "filter: {ROWS} rows in {elapsed:?} = {:.1} M rows/s ({kept} kept)",
        ROWS as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert!(kept > 0 && kept < ROWS);
}
