//! Shared test helpers: the sensor schema, building batches from plain rows, planning an
//! operator from TOML, and reading output batches back as comparable values.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{
    DataType, Field, Float64Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMillisecondType,
};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::testing::CollectSink;
use edgeflow_engine::{DataflowOperator, Graph, NodeKind, PipelineMetrics, RunOptions, RunReport};
use edgeflow_operators::operators;

/// One input row of the sensor schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub device: Option<String>,
    pub zone: Option<i32>,
    pub flag: bool,
    pub ts: i64,
    pub temperature: Option<f64>,
    pub level: Option<i64>,
}

impl Reading {
    pub fn new(device: &str, ts: i64, temperature: Option<f64>) -> Self {
        Self {
            device: Some(device.to_string()),
            zone: Some(1),
            flag: false,
            ts,
            temperature,
            level: None,
        }
    }
}

/// `device_id, zone, flag, ts (event time), temperature, level`.
pub fn sensor_schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("zone", DataType::Int32, true),
            Field::new("flag", DataType::Boolean, false),
            Field::new("ts", timestamp_type(), false),
            Field::new("temperature", DataType::Float64, true),
            Field::new("level", DataType::Int64, true),
        ],
        Some("ts"),
    )
}

pub fn batch(rows: &[Reading]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|r| r.device.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.zone).collect::<Int32Array>()),
        Arc::new(rows.iter().map(|r| Some(r.flag)).collect::<BooleanArray>()),
        Arc::new(
            TimestampMillisecondArray::from(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
                .with_timezone(UTC),
        ),
        Arc::new(rows.iter().map(|r| r.temperature).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.level).collect::<Int64Array>()),
    ];
    RecordBatch::try_new(sensor_schema(), columns).unwrap()
}

/// Parses and plans an operator from the body of its query-file table.
pub fn plan(kind: &str, options: &str, input: &SchemaRef) -> Arc<dyn DataflowOperator> {
    let kind = operators()
        .iter()
        .find(|k| k.name == kind)
        .expect("operator kind is registered");
    let config = (kind.parse)(options.parse().unwrap()).unwrap();
    config.plan(std::slice::from_ref(input)).unwrap()
}

/// A cell of an output row, comparable across runs. Ordered by variant first (`Null` before
/// everything, as keys sort), then by value (floats by IEEE total order).
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => 4,
        }
    }

    /// Equal, with floats compared to a tight relative tolerance (sums may be reassociated).
    pub fn close_to(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            _ => self == other,
        }
    }
}

/// Reads one cell.
pub fn value(column: &ArrayRef, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Utf8 => Value::Str(column.as_string::<i32>().value(row).to_string()),
        DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
        DataType::Int32 => Value::Int(column.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Value::Int(column.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Value::Float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Value::Int(column.as_primitive::<TimestampMillisecondType>().value(row))
        }
        other => panic!("unexpected output type {other}"),
    }
}

/// Every row of `batches` as values, in order.
/// Adds a collecting sink after node `last`, runs `graph` on `workers` workers with
/// `io_threads` for its sources, and returns what reached the sink and the run's report.
pub fn run_into_sink(
    mut graph: Graph,
    last: usize,
    workers: usize,
    io_threads: usize,
) -> (Vec<RecordBatch>, RunReport) {
    let sink = CollectSink::new();
    graph
        .add(
            "out",
            vec![last],
            NodeKind::Sink {
                sink: Box::new(sink.clone()),
            },
        )
        .unwrap();
    let options = RunOptions {
        workers,
        io_threads,
        ..RunOptions::default()
    };
    let report = edgeflow_engine::run(graph, options, PipelineMetrics::new()).unwrap();
    (sink.batches(), report)
}

pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            out.push(batch.columns().iter().map(|c| value(c, row)).collect());
        }
    }
    out
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Value {}
