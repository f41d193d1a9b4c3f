//! The `window` operator: event-time windows with per-key aggregates.
//!
//! ```toml
//! [operators.per_10s]
//! type = "window"
//! inputs = ["clean"]
//! kind = "tumbling"
//! size = "10s"
//! group_by = ["device_id"]
//! aggregates = { temp_avg = "mean(temperature)", temp_max = "max(temperature)", n = "count()" }
//! ```
//!
//! # What it computes
//!
//! Five kinds (`kind` places tumbling and hopping windows; `ordered` runs the others):
//!
//! * `tumbling`: a row with event time `ts` belongs to `[start, start + size)` with
//!   `start = ts - ts % size` (aligned to the Unix epoch plus `offset`, or to the calendar of
//!   `timezone`, daylight-saving changes included);
//! * `hopping`: windows of `size` starting every `slide`, so a row is in `size / slide` of
//!   them;
//! * `sliding`: one window per row, over the `size` before it, per key;
//! * `session`: per key, rows less than `gap` apart (and within `max_length`);
//! * `count`: per key, every `count` rows in event-time order.
//!
//! For each window and each distinct value of the `group_by` fields, the operator emits one
//! row:
//! `window_start`, `window_end` (UTC timestamps), the group keys, then the aggregates in the
//! order the query file lists them. Rows of one window are sorted by key (nulls first). The
//! output's event-time column is `window_start`, so a second window whose size is a multiple
//! of the first can aggregate the first one's output.
//!
//! | function                       | reads                          | output type     | no values  |
//! |--------------------------------|--------------------------------|-----------------|------------|
//! | `count()`                      | rows                           | int64           | —          |
//! | `count(arg)`                   | non-null, non-NaN values       | int64           | 0          |
//! | `count_if(condition)`          | rows where it is true          | int64           | 0          |
//! | `sum(arg)`, `mean(arg)`        | numbers                        | float64         | null       |
//! | `min(arg)`, `max(arg)`         | numbers                        | as the argument | null       |
//! | `first(arg)`, `last(arg)`      | numbers, bools, strings, times | as the argument | null       |
//! | `min_at(arg)`, `max_at(arg)`   | numbers                        | timestamp (UTC) | null       |
//! | `stddev(arg)`, `variance(arg)` | numbers                        | float64         | null (< 2) |
//! | `stddev_pop(arg)`              | numbers                        | float64         | null       |
//! | `var_pop(arg)`                 | numbers                        | float64         | null       |
//! | `median(arg)`                  | numbers                        | float64 (±1%)   | null       |
//! | `quantile(arg, q)`             | numbers                        | float64 (±1%)   | null       |
//! | `distinct_count(arg)`          | numbers, bools, strings, times | int64           | 0          |
//! | `increase(arg)`, `rate(arg)`   | numbers (a counter)            | float64         | null (< 2) |
//! | `time_weighted_mean(arg)`      | numbers                        | float64         | null       |
//! | `integral(arg)`                | numbers                        | float64         | null       |
//!
//! `first` / `last` go by event time (ties: first / last to arrive), `min_at` / `max_at`
//! (also `min_by_time` / `max_by_time`) give the time of the extreme (the earliest on ties).
//! `quantile` and `median` come from a DDSketch, `distinct_count` is exact up to 256 values
//! and a HyperLogLog++ estimate above; `increase` and `rate` treat a drop as a counter reset;
//! `time_weighted_mean` and `integral` take `'step'` (default) or `'linear'` as a second
//! argument. Semantics, error bounds and memory: `accumulate` and its family files, and
//! `docs/queries.md`.
//!
//! `arg` is a field, read as it is (so `min` and `max` keep its type, `int32` included), or
//! an expression of [`crate::expr`], compiled against the input schema at plan time and
//! evaluated once per batch, over the batch's on-time rows, into a column that is then
//! aggregated like a field (`mean(temperature * 1.8 + 32)`; expressions compute with `int64`
//! and `float64`). `condition` is always a bool expression; false and null do not count. A
//! runtime error in an expression makes that value null (skipped) and is counted as
//! `expression_error`, as in `filter` and `derive`.
//!
//! # When it emits, and late rows
//!
//! A tumbling or hopping window is emitted once the watermark reaches its end, that is when no
//! on-time row for it can arrive any more; `emit_every` adds provisional early firings, and
//! `emit_empty` zero-count rows for silent keys. A row whose (earliest) window ended before the
//! watermark of its batch (by more than `allowed_lateness`) is *late*, for all its windows: it
//! is counted as `late` and leaves, unchanged, through the side output `late` (read it as
//! `"<operator>.late"` in a query file). A row within the allowed lateness updates its ended window, which is emitted
//! again with the next `revision`. Rows without an event time are counted as
//! `missing_event_time`. Session, sliding and count windows process rows in event-time order
//! once the watermark passes them. `max_keys` and `[pipeline] memory_limit` bound the state.
//!
//! # Layout
//!
//! * [`config`](WindowConfig): options and their checks; `kind`: window placement;
//! * `expr` and `plan_aggregate`: the aggregate call and its planning (the argument is left to
//!   [`crate::expr`]);
//! * `keys` and `accumulate`: group keys and aggregate state, a column at a time;
//! * `aggregator` and `operator`: tumbling and hopping windows (state, emissions, timely
//!   operator with capabilities per firing);
//! * `ordered` and `ordered_operator`: session, sliding and count windows.

use std::sync::Arc;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{DataflowOperator, OptionError, parse_options};

use self::kind::WindowKind;
use self::ordered_operator::OrderedWindow;
use crate::{OperatorConfig, OperatorKind};

mod accumulate;
mod aggregator;
mod config;
mod expr;
mod keys;
mod kind;
mod operator;
mod ordered;
mod ordered_operator;
mod plan_aggregate;

pub use config::{WINDOW_END, WINDOW_START, WindowConfig};
pub use expr::{
    AggregateExpr, AggregateFunction, AggregateParameter, ExprError, Interpolation, parse_aggregate,
};
pub use operator::AlignedWindow;

/// The `window` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "window",
    summary: "Aggregates rows per key over tumbling, hopping, sliding, session or count windows",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<WindowConfig>(table)?))
}

impl OperatorConfig for WindowConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        let plan = Arc::new(self.plan_window(inputs)?);
        let input_schema = inputs[0].clone();
        Ok(match plan.kind {
            WindowKind::Aligned(_) => Arc::new(AlignedWindow { plan, input_schema }),
            WindowKind::Sliding { .. } | WindowKind::Session { .. } | WindowKind::Count { .. } => {
                // These kinds follow each key's rows in event-time order as the watermark
                // passes them; arrival order on the gateway's clock is not implemented.
                if plan.processing_time {
                    return Err(vec![
                        OptionError::at(
                            "time",
                            format!("{} windows follow event time only", self.kind),
                        )
                        .with_hint("remove time = \"processing\""),
                    ]);
                }
                Arc::new(OrderedWindow { plan, input_schema })
            }
        })
    }
}

/// The rows of a batch that one step works on: all of them, or the listed ones.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Selection<'a> {
    /// Rows `0..n`.
    All(usize),
    /// These rows, in this order.
    Rows(&'a [u32]),
}

impl Selection<'_> {
    /// Number of rows selected.
    pub(crate) fn len(self) -> usize {
        match self {
            Self::All(n) => n,
            Self::Rows(rows) => rows.len(),
        }
    }

    /// Calls `f(k, row)` for the `k`-th selected row. One loop per variant, so the compiler
    /// sees a plain counted loop in the common `All` case.
    #[inline]
    pub(crate) fn for_each(self, mut f: impl FnMut(usize, usize)) {
        match self {
            Self::All(n) => (0..n).for_each(|row| f(row, row)),
            Self::Rows(rows) => rows
                .iter()
                .enumerate()
                .for_each(|(k, &row)| f(k, row as usize)),
        }
    }
}
