//! The timely operator around [`AnomalyState`].
//!
//! Rows are exchanged by key (all to worker 0 without `group_by`), so each worker owns its
//! keys' state. The operator buffers on-time rows and has them judged once the input frontier
//! (the watermark) has passed them, in event-time order per key.
//!
//! It holds at most one capability for its main output: taken from the first batch that
//! brings on-time rows, downgraded to the input frontier as it advances, used for everything
//! it emits, and dropped once nothing is buffered and no `gap` deadline is pending (so an idle
//! operator does not hold the frontier back). With `gap`, keeping that capability is what lets
//! a silence be reported when only the watermark moves. At the end of input (empty frontier)
//! every buffered row is judged and no silence is reported.
//!
//! The `late` side output carries rows whose event time was below the watermark of the batch
//! that brought them, unchanged, stamped with that watermark.

use std::sync::Arc;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::operators::Capability;
use edgeflow_engine::timely::dataflow::operators::generic::OutputBuilder;
use edgeflow_engine::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, OperatorContext, key_exchange,
};

use super::state::AnomalyState;
use super::{Anomaly, AnomalyPlan};
use crate::expr::ErrorReporter;
use crate::input_stash::{InputStash, Stashed};

const BUG: &str = "anomaly kernels on a batch of the planned schema cannot fail: \
                   this is a bug, please report it";

/// Name of the side output carrying late rows.
pub const LATE: &str = "late";

/// Metric: rows whose value was null or NaN.
pub const MISSING_VALUE: &str = "missing_value";

/// Metric: keys forgotten to stay under `max_keys` or the pipeline's memory limit.
pub const FORGOTTEN_KEYS: &str = "forgotten_keys";

impl DataflowOperator for Anomaly {
    fn output_schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(LATE.to_string(), self.plan.input_schema.clone())]
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
            .expect("the planner gives an 'anomaly' operator exactly one input");
        let plan: Arc<AnomalyPlan> = self.plan.clone();
        let metrics = ctx.metrics.clone();
        let memory = ctx.memory.clone();
        let mut reporter = match &plan.value {
            super::ValueSource::Expr(expr) => Some(ErrorReporter::new(&ctx.name, expr.text())),
            super::ValueSource::Column(_) => None,
        };

        let mut builder = OperatorBuilder::new("Anomaly".to_string(), input.scope());
        let activator = input.scope().activator_for(builder.operator_info().address);
        let mut input = builder.new_input(input, key_exchange(plan.keys.clone()));
        let (main, main_stream) = builder.new_output::<Batch>();
        let (late, late_stream) = builder.new_output::<Batch>();
        let mut main = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(main);
        let mut late = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(late);

        builder.build(move |initial| {
            // Output is only ever sent with capabilities derived from input batches.
            drop(initial);
            let mut state = AnomalyState::new(plan.clone()).expect(BUG);
            let mut held: Option<Capability<EventTime>> = None;
            let (mut reported_rows, mut reported_bytes) = (0usize, 0usize);
            let mut stash = InputStash::default();
            move |frontiers| {
                let mut main = main.activate();
                let mut late = late.activate();
                let (main_port, late_port) = (main.output_index(), late.output_index());
                // Read all that waits, work through a bounded part (see `crate::input_stash`).
                stash.read(&mut input, main_port, late_port);
                for Stashed {
                    main: capability,
                    side: late_capability,
                    rows,
                } in stash.this_activation()
                {
                    let watermark = *capability.time();
                    metrics.add_rows_in(rows.num_rows());
                    let absorbed = state.absorb(&rows, watermark).expect(BUG);
                    metrics.count_dropped(LATE, absorbed.late);
                    metrics.count_dropped("missing_event_time", absorbed.missing_time);
                    if let Some(late_rows) = absorbed.late_rows {
                        late.session_with_builder(&late_capability)
                            .give_container(&mut Batch::new(late_rows));
                    }
                    // The held capability is at most the frontier, hence at most this batch's
                    // time: one capability covers every buffered row.
                    if absorbed.on_time > 0 && held.is_none() {
                        held = Some(capability);
                    }
                }
                if !stash.is_empty() {
                    activator.activate();
                }

                let watermark = stash.earliest(&frontiers[0]);
                let flushed = state.advance(watermark).expect(BUG);
                if let Some(reporter) = reporter.as_mut() {
                    reporter.report(&metrics, flushed.expression_errors);
                }
                if flushed.missing_value > 0 {
                    metrics.add_value(MISSING_VALUE, flushed.missing_value as u64);
                }
                if let (Some(capability), Some(watermark)) = (held.as_mut(), watermark)
                    && capability.time() < &watermark
                {
                    capability.downgrade(&watermark);
                }
                if let Some(rows) = flushed.rows {
                    let capability = held
                        .as_ref()
                        .expect("rows are only judged while buffered rows hold a capability");
                    metrics.add_rows_out(rows.num_rows());
                    main.session_with_builder(capability)
                        .give_container(&mut Batch::new(rows));
                }
                // Keep the keys under `max_keys`, and halve them while the pipeline is over its
                // memory limit: the least recently seen keys are forgotten.
                let limit = if memory.exceeded() {
                    (state.keys_held() / 2).clamp(1, plan.max_keys)
                } else {
                    plan.max_keys
                };
                if state.keys_held() > limit {
                    let forgotten = state.shed_keys(limit);
                    if forgotten > 0 {
                        metrics.add_value(FORGOTTEN_KEYS, forgotten as u64);
                    }
                }
                if !state.needs_capability() {
                    held = None;
                }

                let rows = state.state_rows();
                if rows != reported_rows {
                    metrics.add_state_rows(rows as i64 - reported_rows as i64);
                    reported_rows = rows;
                }
                let bytes = state.state_bytes() + state.pending_bytes();
                if bytes != reported_bytes {
                    metrics.add_state_bytes(bytes as i64 - reported_bytes as i64);
                    memory.adjust(reported_bytes as u64, bytes as u64);
                    reported_bytes = bytes;
                }
            }
        });
        vec![main_stream, late_stream]
    }
}
