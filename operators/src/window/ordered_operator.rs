//! [`OrderedWindow`]: the timely operator around [`OrderedWindows`], for session, sliding and
//! count windows.
//!
//! Rows are exchanged by group key (all to worker 0 without one), so each worker owns its
//! keys' state. These kinds only know where a window ends once they have seen a key's rows in
//! event-time order, so the operator buffers on-time rows and hands them over once the input
//! frontier (the watermark) has passed them.
//!
//! It holds at most one capability: taken from the first batch that brings on-time rows,
//! downgraded to the input frontier as the frontier advances, used for everything the windows
//! emit, and dropped once nothing is buffered and no window is open (so an idle operator does
//! not hold the frontier back). When the frontier is empty (end of input) every window
//! closes. Output rows are stamped with the watermark at which their window closed; their
//! event time, `window_start`, lies before it, so a window reading this operator's output would
//! find most of it late.
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

use super::config::WindowPlan;
use super::operator::{EVICTED_WINDOWS, FORGOTTEN_KEYS, LATE};
use super::ordered::OrderedWindows;
use crate::expr::ErrorReporter;
use crate::input_stash::{InputStash, Stashed};

const BUG: &str = "window kernels on a batch of the planned schema cannot fail: \
                   this is a bug, please report it";

/// The planned session, sliding or count window operator.
#[derive(Debug)]
pub struct OrderedWindow {
    pub(crate) plan: Arc<WindowPlan>,
    pub(crate) input_schema: SchemaRef,
}

impl DataflowOperator for OrderedWindow {
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
        let memory = ctx.memory.clone();
        // One reporter per aggregate that reads an expression, as in the aligned window.
        let mut reporters: Vec<Option<ErrorReporter>> = plan
            .aggregates
            .iter()
            .map(|spec| {
                spec.expression
                    .as_ref()
                    .map(|e| ErrorReporter::new(&ctx.name, e.text()))
            })
            .collect();

        let mut builder = OperatorBuilder::new("OrderedWindow".to_string(), input.scope());
        let activator = input.scope().activator_for(builder.operator_info().address);
        let mut input = builder.new_input(input, key_exchange(plan.keys.clone()));
        let (windows, window_stream) = builder.new_output::<Batch>();
        let (late, late_stream) = builder.new_output::<Batch>();
        let mut windows = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(windows);
        let mut late = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(late);

        builder.build(move |initial| {
            // Output is only ever sent with capabilities derived from input batches.
            drop(initial);
            let mut state = OrderedWindows::new(plan.clone()).expect(BUG);
            let mut held: Option<Capability<EventTime>> = None;
            // The state size last reported to the metrics and the pipeline's memory budget.
            let (mut reported_rows, mut reported_bytes) = (0usize, 0usize);
            let mut stash = InputStash::default();
            move |frontiers| {
                let mut windows = windows.activate();
                let mut late = late.activate();
                let (window_port, late_port) = (windows.output_index(), late.output_index());
                // Read all that waits, work through a bounded part (see `crate::input_stash`).
                stash.read(&mut input, window_port, late_port);
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
                let emitted = state.advance(watermark).expect(BUG);
                for (reporter, &errors) in reporters.iter_mut().zip(state.expression_errors()) {
                    if let Some(reporter) = reporter {
                        reporter.report(&metrics, errors);
                    }
                }
                if let (Some(capability), Some(watermark)) = (held.as_mut(), watermark)
                    && capability.time() < &watermark
                {
                    capability.downgrade(&watermark);
                }
                if let Some(rows) = emitted {
                    let capability = held
                        .as_ref()
                        .expect("windows only close while rows or windows hold a capability");
                    metrics.add_rows_out(rows.num_rows());
                    windows
                        .session_with_builder(capability)
                        .give_container(&mut Batch::new(rows));
                }
                // Keep the keys under `max_keys`, and halve them while the pipeline is over its
                // memory limit: forget idle keys, then close the most idle keys' windows early.
                let limit = if memory.exceeded() {
                    (state.keys_held() / 2).clamp(1, plan.max_keys)
                } else {
                    plan.max_keys
                };
                if state.keys_held() > limit {
                    let (rows, evicted, forgotten) = state.shed_keys(limit).expect(BUG);
                    if evicted > 0 {
                        metrics.add_value(EVICTED_WINDOWS, evicted as u64);
                    }
                    if forgotten > 0 {
                        metrics.add_value(FORGOTTEN_KEYS, forgotten as u64);
                    }
                    if let Some(rows) = rows {
                        let capability = held.as_ref().expect("open windows hold a capability");
                        metrics.add_rows_out(rows.num_rows());
                        windows
                            .session_with_builder(capability)
                            .give_container(&mut Batch::new(rows));
                    }
                }
                if !state.needs_capability() {
                    held = None;
                }

                let (rows, bytes) = (state.state_rows(), state.state_bytes());
                metrics.add_state_rows(rows as i64 - reported_rows as i64);
                metrics.add_state_bytes(bytes as i64 - reported_bytes as i64);
                memory.adjust(reported_bytes as u64, bytes as u64);
                (reported_rows, reported_bytes) = (rows, bytes);
            }
        });
        vec![window_stream, late_stream]
    }
}
