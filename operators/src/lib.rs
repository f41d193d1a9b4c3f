//! Operators: what a pipeline does to rows between sources and sinks.
//!
//! Each operator lives in its own module with a `*Config` (serde, one `///` per option), its
//! [`DataflowOperator`] implementation (the timely operators it adds on each worker), and its
//! tests. It is made known to query files by one line in [`operators`].
//!
//! # Tour
//!
//! * [`clean`]: repairs (units, formats, clipping, gaps) or rejects (nulls, ranges, duplicates,
//!   impossible jumps) dirty rows, every reject counted and sent to its `rejected` side output
//!   (row-local, or exchanged by key for the per-key rules).
//! * [`enrich`]: adds columns from a device registry file, kept as a differential-dataflow
//!   arrangement on every worker and reloaded when the file changes.
//! * [`filter`]: keeps rows for which a boolean [`expr`] expression is true (row-local).
//! * [`derive`](mod@derive): adds or replaces columns computed from [`expr`] expressions (row-local).
//! * [`window`]: tumbling, hopping, sliding, session and count windows with per-key
//!   aggregates (keys exchanged across workers, state held per open window and key, bounded by
//!   `max_keys` and the pipeline's memory budget).
//! * [`anomaly`]: per-key anomaly detection (z-score, EWMA, MAD, spike/dip, change point,
//!   flatline, gap, rate of change, thresholds, ensembles), in event-time order.
//!
//! ```text
//! source ─▶ clean (Pipeline pact) ─▶ window (key exchange) ─▶ sink
//!           drops null / NaN /        one row per window and key,
//!           out-of-range rows         emitted when the watermark passes the window end
//! ```
//!
//! # Adding an operator
//! 1. Add `src/<name>.rs` (or `src/<name>/`) with a config implementing [`OperatorConfig`] and
//!    a `pub const KIND: OperatorKind`.
//! 2. Add `<name>::KIND` to the sorted list in [`operators`].
#![forbid(missing_docs)]

use std::fmt::Debug;
use std::sync::Arc;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{DataflowOperator, OptionError};

pub mod anomaly;
pub mod clean;
pub mod derive;
pub mod enrich;
pub mod expr;
mod fields;
pub mod filter;
mod input_stash;
pub mod options;
mod reorder;
mod row_local;
pub mod window;

/// An operator's options, parsed from a query file.
pub trait OperatorConfig: Debug + Send + Sync {
    /// Checks the options against the input schemas (in `inputs` order) and returns the
    /// operator, whose output schema is then known.
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>>;
}

/// A kind of operator, as named by `type = "..."` in a query file.
#[derive(Clone, Copy, Debug)]
pub struct OperatorKind {
    /// The `type` value.
    pub name: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Parses a node's options (without `type` and `inputs`).
    pub parse: fn(toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError>,
}

/// Every operator kind, sorted by name.
pub fn operators() -> &'static [OperatorKind] {
    &[
        anomaly::KIND,
        clean::KIND,
        derive::KIND,
        enrich::KIND,
        filter::KIND,
        window::KIND,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_sorted_and_unique() {
        let names: Vec<&str> = operators().iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert_eq!(
            names,
            ["anomaly", "clean", "derive", "enrich", "filter", "window"]
        );
    }
}
