//! [`TumblingWindow`]: the timely operator around a [`WindowAggregator`].
//!
//! Rows are exchanged by group key (all to worker 0 without one), so each worker owns its
//! keys' state. For every window it opens, the operator keeps a capability at `end - 1`,
//! derived from the batch that opened it (whose timestamp, the watermark, is below `end`).
//! Once the input frontier has no time below `end`, no on-time row for the window can come:
//! it is emitted at `end - 1` and its capability dropped, which lets the frontier downstream
//! move on. The output's event time is `window_start`, which is at most `end - 1`, so
//! cascaded windows whose size is a multiple of this one stay on time.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::operators::Capability;
use edgeflow_engine::timely::dataflow::operators::generic::Operator;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, OperatorContext, key_exchange,
};

use super::aggregator::WindowAggregator;
use super::config::WindowPlan;

const BUG: &str = "window kernels on a batch of the planned schema cannot fail: \
                   this is a bug, please report it";

/// The planned tumbling-window operator.
#[derive(Debug)]
pub struct TumblingWindow {
    pub(crate) plan: Arc<WindowPlan>,
}

impl DataflowOperator for TumblingWindow {
    fn output_schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let input = inputs
            .into_iter()
            .next()
            .expect("the planner gives a 'window' operator exactly one input");
        let plan = self.plan.clone();
        let metrics = ctx.metrics.clone();
        let size = plan.size_ms;
        input.unary_frontier::<CapacityContainerBuilder<Batch>, _, _, _>(
            key_exchange(plan.keys.clone()),
            "TumblingWindow",
            move |initial, _info| {
                // Output is only ever sent at window ends, each with its own capability.
                drop(initial);
                let mut aggregator = WindowAggregator::new(plan).expect(BUG);
                let mut capabilities: BTreeMap<i64, Capability<EventTime>> = BTreeMap::new();
                let mut reported_groups = 0usize;
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each(|capability, data| {
                        let (Some(rows), Some(&watermark)) = (data.take(), capability.least())
                        else {
                            return;
                        };
                        metrics.add_rows_in(rows.num_rows());
                        let absorbed = aggregator
                            .absorb(&rows, watermark, |start| {
                                let last = start.saturating_add(size) - 1;
                                capabilities
                                    .insert(start, capability.delayed(&(last as EventTime), port));
                            })
                            .expect(BUG);
                        metrics.count_dropped("late", absorbed.late);
                        metrics.count_dropped("missing_event_time", absorbed.missing_time);
                    });

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
                            output
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
            },
        )
    }
}
