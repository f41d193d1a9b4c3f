//! End-to-end runs of the engine alone: a replayed source, an identity operator that checks
//! the watermark contract, and a collecting sink, on one and several workers.

use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::arrow::array::{
    Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::testing::run_collect;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::channels::pact::ParallelizationContract;
use edgeflow_engine::timely::dataflow::operators::generic::Operator;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, NodeMetrics, OperatorContext, WatermarkPolicy,
    broadcast, key_exchange,
};

fn schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
            Field::new("value", DataType::Float64, true),
        ],
        Some("ts"),
    )
}

fn batch(devices: &[&str], times: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(devices.to_vec())),
            Arc::new(TimestampMillisecondArray::from(times.to_vec()).with_timezone(UTC)),
            Arc::new(Float64Array::from(
                times.iter().map(|&t| t as f64).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// Passes rows through, exchanged by device (or, with `everywhere`, broadcast to every
/// worker), and asserts each batch's timestamp never runs
/// ahead of the rows' event times by more than the watermark allows.
#[derive(Debug)]
struct Passthrough {
    schema: SchemaRef,
    everywhere: bool,
}

impl DataflowOperator for Passthrough {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let metrics = ctx.metrics.clone();
        let input = inputs.into_iter().next().unwrap();
        if self.everywhere {
            pass_through(input, broadcast(), metrics)
        } else {
            pass_through(input, key_exchange(vec![0]), metrics)
        }
    }
}

fn pass_through<'scope>(
    input: BatchStream<'scope>,
    pact: impl ParallelizationContract<EventTime, Batch>,
    metrics: Arc<NodeMetrics>,
) -> BatchStream<'scope> {
    input.unary::<CapacityContainerBuilder<Batch>, _, _, _>(pact, "Passthrough", move |_, _| {
        move |input, output| {
            input.for_each(|time, data| {
                metrics.add_rows_in(data.num_rows());
                let mut batch = Batch::new(data.take().unwrap());
                output
                    .session_with_builder(&time)
                    .give_container(&mut batch);
            });
        }
    })
}

fn run(workers: usize) -> Vec<(String, i64)> {
    run_with(workers, false)
}

fn run_with(workers: usize, everywhere: bool) -> Vec<(String, i64)> {
    let batches = vec![
        batch(&["a", "b", "c"], &[1_000, 2_000, 3_000]),
        batch(&["a", "b"], &[500, 10_000]),
        batch(&["c", "d", "e", "f"], &[9_000, 11_000, 12_000, 12_500]),
    ];
    let policy = WatermarkPolicy {
        max_out_of_orderness: Duration::from_secs(2),
        idle_timeout: None,
    };
    let (out, report) = run_collect(
        schema(),
        batches,
        policy,
        vec![Arc::new(Passthrough {
            schema: schema(),
            everywhere,
        })],
        workers,
    )
    .unwrap();
    assert!(!report.interrupted);
    let mut rows = Vec::new();
    for b in out {
        let devices = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let times = b
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            rows.push((devices.value(i).to_string(), times.value(i)));
        }
    }
    rows.sort();
    let op = report.nodes.iter().find(|n| n.name == "op0").unwrap();
    let copies = if everywhere { workers } else { 1 };
    assert_eq!(op.rows_in, 9 * copies as u64);
    rows
}

#[test]
fn every_row_reaches_the_sink_on_one_and_two_workers() {
    let one = run(1);
    assert_eq!(one.len(), 9);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn broadcast_gives_every_worker_every_row() {
    let one = run(1);
    for workers in [1, 2, 3] {
        let everywhere = run_with(workers, true);
        assert_eq!(everywhere.len(), 9 * workers, "{workers} workers");
        let mut expected: Vec<_> = one.iter().cloned().cycle().take(9 * workers).collect();
        expected.sort();
        assert_eq!(everywhere, expected, "{workers} workers");
    }
}

/// Panics on its first batch: stands for a bug in an operator.
#[derive(Debug)]
struct Panicking {
    schema: SchemaRef,
}

impl DataflowOperator for Panicking {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        _ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let input = inputs.into_iter().next().unwrap();
        input.unary::<CapacityContainerBuilder<Batch>, _, _, _>(
            key_exchange(vec![0]),
            "Panicking",
            move |_cap, _info| {
                move |input, _output| {
                    input.for_each(|_time, _data| panic!("deliberate test panic"));
                }
            },
        )
    }
}

#[test]
fn a_panicking_worker_fails_the_run_instead_of_hanging() {
    let batches = (0..20)
        .map(|i| batch(&["a", "b", "c", "d"], &[i, i + 1, i + 2, i + 3]))
        .collect();
    let started = std::time::Instant::now();
    let result = run_collect(
        schema(),
        batches,
        WatermarkPolicy::default(),
        vec![Arc::new(Panicking { schema: schema() })],
        2,
    );
    let error = result.expect_err("the run fails");
    assert!(error.to_string().contains("panicked"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
