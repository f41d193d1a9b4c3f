//! Criterion benchmark of the dataflow alone: in-memory batches → clean → 10 s tumbling window
//! (per device: count, mean, min, max) → collecting sink, on 1 and 2 workers.
//!
//! It isolates the engine and operators from file decoding and Parquet encoding (which
//! `scripts/bench` measures end to end). Run with:
//!
//! ```sh
//! cargo bench --bench dataflow
//! ```

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgeflow_engine::arrow::array::{
    Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::testing::run_collect;
use edgeflow_engine::{DataflowOperator, WatermarkPolicy};

const ROWS: usize = 1_000_000;
const DEVICES: usize = 1_000;
const BATCH: usize = 8_192;

fn schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("temperature", DataType::Float64, true),
        ],
        Some("ts"),
    )
}

/// One reading per device per second, in time order, with a few values out of range.
fn batches() -> Vec<RecordBatch> {
    let names: Vec<String> = (0..DEVICES).map(|d| format!("dev-{d:04}")).collect();
    (0..ROWS)
        .step_by(BATCH)
        .map(|first| {
            let rows = first..(first + BATCH).min(ROWS);
            let device =
                StringArray::from_iter_values(rows.clone().map(|i| names[i % DEVICES].as_str()));
            let ts = TimestampMillisecondArray::from_iter_values(
                rows.clone()
                    .map(|i| 1_717_200_000_000 + (i / DEVICES) as i64 * 1_000),
            )
            .with_timezone(UTC);
            let temperature = Float64Array::from_iter_values(rows.map(|i| {
                if i % 997 == 0 {
                    500.0
                } else {
                    20.0 + (i % 13) as f64
                }
            }));
            RecordBatch::try_new(
                schema(),
                vec![Arc::new(device), Arc::new(ts), Arc::new(temperature)],
            )
            .expect("valid batch")
        })
        .collect()
}

fn operators() -> Vec<Arc<dyn DataflowOperator>> {
    let plan = |kind: &str, text: &str, input: &SchemaRef| {
        let registry = edgeflow_operators::operators();
        let kind = registry
            .iter()
            .find(|k| k.name == kind)
            .expect("registered");
        let config = (kind.parse)(text.parse().expect("valid TOML")).expect("valid options");
        config.plan(std::slice::from_ref(input)).expect("plans")
    };
    let clean = plan(
        "clean",
        "drop_null = [\"temperature\"]\ndrop_outside = { temperature = [-40.0, 125.0] }",
        &schema(),
    );
    let window = plan(
        "window",
        "size = \"10s\"\ngroup_by = [\"device_id\"]\naggregates = { n = \"count()\", avg = \"mean(temperature)\", lo = \"min(temperature)\", hi = \"max(temperature)\" }",
        &clean.output_schema(),
    );
    vec![clean, window]
}

fn dataflow(c: &mut Criterion) {
    let input = batches();
    let mut group = c.benchmark_group("clean_window");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for workers in [1, 2] {
        group.bench_function(format!("{workers}_workers"), |b| {
            b.iter(|| {
                let (out, _) = run_collect(
                    schema(),
                    input.clone(),
                    WatermarkPolicy::default(),
                    operators(),
                    workers,
                )
                .expect("runs");
                assert!(!out.is_empty());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, dataflow);
criterion_main!(benches);
