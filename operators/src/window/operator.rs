//! [`AlignedWindow`]: the timely operator around a [`WindowAggregator`].
//!
//! Rows are exchanged by group key (all to worker 0 without one), so each worker owns its
//! keys' state. For every window it opens, the operator keeps a capability at `end - 1`,
//! derived from the batch that opened it (whose timestamp, the watermark, is below `end`).
//! Once the input frontier has no time below `end`, no on-time row for the window can come:
//! it is emitted at `end - 1` and its capability dropped, which lets the frontier downstream
//! move on. The output's event time is `window_start`, which is at most `end - 1`, so
//! cascaded windows whose size is a multiple of this one stay on time.
//!
//! The operator has a second output, the `late` side output: rows whose window had already
//! closed, unchanged, stamped with the watermark of the batch that brought them.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{Array, Scalar, TimestampMillisecondArray};
use edgeflow_engine::arrow::compute::{filter_record_batch, kernels::cmp::lt};
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::operators::Capability;
use edgeflow_engine::timely::dataflow::operators::generic::OutputBuilder;
use edgeflow_engine::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, OperatorContext, key_exchange,
};

use super::aggregator::{WindowAggregator, late_threshold};
use super::config::WindowPlan;
use crate::expr::ErrorReporter;

const BUG: &str = "window kernels on a batch of the planned schema cannot fail: \
                   this is a bug, please report it";

/// Name of the side output carrying late rows.
pub const LATE: &str = "late";

/// The planned tumbling-window operator.
#[derive(Debug)]
pub struct AlignedWindow {
    pub(crate) plan: Arc<WindowPlan>,
    pub(crate) input_schema: SchemaRef,
}

impl DataflowOperator for AlignedWindow {
    fn output_schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(LATE.to_string(), self.input_schema.clone())]
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        self.build_with_side_outputs(inputs, ctx).swap_remove(0)
    }

    fn build_with_side_outputs<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> Vec<BatchStream<'scope>> {
        let input = inputs
            .into_iter()
            .next()
            .expect("the planner gives a 'window' operator exactly one input");
        let plan = self.plan.clone();
        let metrics = ctx.metrics.clone();
        let size = plan.alignment().size_ms;
        // One reporter per aggregate that reads an expression: runtime errors in it (division
        // by zero, a failed cast) make the value null, which the aggregate skips, and are
        // counted as `expression_error`, as in `filter` and `derive`.
        let mut reporters: Vec<Option<ErrorReporter>> = plan
            .aggregates
            .iter()
            .map(|spec| {
                spec.expression
                    .as_ref()
                    .map(|e| ErrorReporter::new(&ctx.name, e.text()))
            })
            .collect();

        let mut builder = OperatorBuilder::new("AlignedWindow".to_string(), input.scope());
        let mut input = builder.new_input(input, key_exchange(plan.keys.clone()));
        let (windows, window_stream) = builder.new_output::<Batch>();
        let (late, late_stream) = builder.new_output::<Batch>();
        let mut windows = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(windows);
        let mut late = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(late);

        builder.build(move |initial| {
            // Output is only ever sent with capabilities derived from input batches.
            drop(initial);
            let mut aggregator = WindowAggregator::new(plan.clone()).expect(BUG);
            let mut capabilities: BTreeMap<i64, Capability<EventTime>> = BTreeMap::new();
            let mut reported_groups = 0usize;
            move |frontiers| {
                let mut windows = windows.activate();
                let mut late = late.activate();
                let (window_port, late_port) = (windows.output_index(), late.output_index());
                input.for_each(|capability, data| {
                    let (Some(rows), Some(&watermark)) = (data.take(), capability.least()) else {
                        return;
                    };
                    metrics.add_rows_in(rows.num_rows());
                    let absorbed = aggregator
                        .absorb(&rows, watermark, |start| {
                            let last = start.saturating_add(size) - 1;
                            capabilities.insert(
                                start,
                                capability.delayed(&(last as EventTime), window_port),
                            );
                        })
                        .expect(BUG);
                    for (reporter, &errors) in
                        reporters.iter_mut().zip(aggregator.expression_errors())
                    {
                        if let Some(reporter) = reporter {
                            reporter.report(&metrics, errors);
                        }
                    }
                    metrics.count_dropped(LATE, absorbed.late);
                    metrics.count_dropped("missing_event_time", absorbed.missing_time);
                    if absorbed.late > 0 {
                        let late_rows = late_rows(&rows, plan.event_time, watermark, size);
                        let stamp = capability.delayed(&watermark, late_port);
                        late.session_with_builder(&stamp)
                            .give_container(&mut Batch::new(late_rows));
                    }
                });

                let frontier = &frontiers[0];
                while let Some(end) = aggregator.first_end() {
                    if frontier.less_than(&(end as EventTime)) {
                        break;
                    }
                    let Some((start, rows)) = aggregator.close_first().expect(BUG) else {
                        break;
                    };
                    let capability = capabilities
                        .remove(&start)
                        .expect("every open window holds a capability");
                    metrics.add_rows_out(rows.num_rows());
                    if rows.num_rows() > 0 {
                        windows
                            .session_with_builder(&capability)
                            .give_container(&mut Batch::new(rows));
                    }
                }

                let groups = aggregator.groups();
                if groups != reported_groups {
                    metrics.add_state_rows(groups as i64 - reported_groups as i64);
                    reported_groups = groups;
                }
            }
        });
        vec![window_stream, late_stream]
    }
}

/// The rows of `rows` whose window ended at or before `watermark`: event time below the start
/// of the watermark's window (the same rule as [`WindowAggregator::absorb`]).
fn late_rows(
    rows: &edgeflow_engine::arrow::array::RecordBatch,
    event_time: usize,
    watermark: EventTime,
    size: i64,
) -> edgeflow_engine::arrow::array::RecordBatch {
    let threshold = late_threshold(watermark, size);
    let times = rows.column(event_time);
    let timezone = match times.data_type() {
        edgeflow_engine::arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    let bound = TimestampMillisecondArray::from(vec![threshold]).with_timezone_opt(timezone);
    let mask = lt(times, &Scalar::new(bound)).expect(BUG);
    // Null event times compare as null and are not selected: they are counted as missing.
    filter_record_batch(rows, &mask).expect(BUG)
}
