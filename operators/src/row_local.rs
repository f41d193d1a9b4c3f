//! The timely wiring shared by row-local operators (`clean`, `filter`, `derive`): each input
//! batch goes through a function on its own worker (no exchange) and what it returns leaves
//! at the same timestamp. Rows in and out are counted here; the function counts the rest.

use std::sync::Arc;

use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::channels::pact::Pipeline;
use edgeflow_engine::timely::dataflow::operators::generic::Operator;
use edgeflow_engine::{Batch, BatchStream, NodeMetrics};

/// Adds a row-local operator named `name` over the single stream in `inputs`.
///
/// `apply` gets every non-empty batch and returns the rows to emit (`None` or an empty batch
/// emits nothing).
pub(crate) fn map_batches<'scope>(
    inputs: Vec<BatchStream<'scope>>,
    name: &'static str,
    metrics: Arc<NodeMetrics>,
    mut apply: impl FnMut(RecordBatch) -> Option<RecordBatch> + 'static,
) -> BatchStream<'scope> {
    let input = inputs
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("the planner gives a '{name}' operator exactly one input"));
    input.unary::<CapacityContainerBuilder<Batch>, _, _, _>(
        Pipeline,
        name,
        move |_capability, _info| {
            move |input, output| {
                input.for_each(|time, data| {
                    let Some(rows) = data.take() else {
                        return;
                    };
                    metrics.add_rows_in(rows.num_rows());
                    if let Some(rows) = apply(rows).filter(|r| r.num_rows() > 0) {
                        metrics.add_rows_out(rows.num_rows());
                        output
                            .session_with_builder(&time)
                            .give_container(&mut Batch::new(rows));
                    }
                });
            }
        },
    )
}
