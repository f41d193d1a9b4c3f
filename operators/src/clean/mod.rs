//! The `clean` operator: repairs what can be repaired in sensor rows and rejects the rest,
//! never silently.
//!
//! Use it right after a source, before anything aggregates: a sensor that reports `null`,
//! `NaN`, a physically impossible value, a jump no real temperature makes, the same reading
//! twice (MQTT QoS 1 redelivery), timestamps in five formats or Fahrenheit next to Celsius
//! should not skew a mean.
//!
//! ```toml
//! [operators.clean]
//! type = "clean"
//! inputs = ["sensors"]
//! key = ["device_id"]
//! timestamps = { reported = { formats = ["rfc3339", "epoch"] } }
//! normalize = { status = { trim = true, case = "lower", map = { "1" = "on" } } }
//! convert = { temperature = { from = "degF", to = "degC" } }
//! drop_null = ["device_id"]
//! drop_outside = { temperature = [-40.0, 125.0] }
//! clip = { humidity = [0.0, 100.0] }
//! dedup = { horizon = "10m" }
//! max_rate_of_change = { temperature = 2.0 }
//! fill = { humidity = { method = "previous", max_gap = "5m" }, level = { method = "linear" } }
//! ```
//!
//! # Order of the rules
//!
//! Each row goes through the rules in this order, whatever the order in the file:
//!
//! 1. `timestamps`, `normalize`, `convert`, `calibrate`: transforms (a timestamp no format
//!    reads rejects the row as `bad_timestamp`);
//! 2. `drop_null` (`null_field`), `drop_outside` (`out_of_range`), `clip` (counted as
//!    `clipped`), on the transformed values;
//! 3. per key, in arrival order: `dedup` (`duplicate`), `max_rate_of_change`
//!    (`rate_of_change`), `fill` (counted as `filled`, or `unfilled` when nothing was near
//!    enough). See [`keyed`] for the state these keep and its bounds.
//!
//! A `linear` fill needs the key's next reading: a row waiting for it is held back and leaves
//! later, filled or not, with the timestamp of the batch that brought it; see
//! [`interpolate`] for the rules, the bound on held rows and what it does to the output
//! frontier. Rows without a missing `linear` value are never held.
//!
//! A rejected row is counted once, under the first rule it fails, in the node's drop counts,
//! and leaves **unchanged** (as it arrived) through the `rejected` side output
//! (`inputs = ["clean.rejected"]`) with a `reason` column such as `out_of_range:temperature`
//! or `duplicate`, stamped with the watermark of its batch.
//!
//! Without per-key rules rows stay on their worker; with them, rows are exchanged by `key`
//! (or, for a `dedup` alone, by the compared fields the operator does not change). Key fields
//! may not be transformed by the same operator: routing happens before the transforms.
//!
//! The output schema is the input's with transformed fields retyped (`timestamps` gives
//! `timestamp_ms`, `convert` and `calibrate` give `float64`), `timestamps.into` columns and
//! one bool `<field>_filled` column per `fill` field appended, and the metadata kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array,
};
use edgeflow_engine::arrow::buffer::BooleanBuffer;
use edgeflow_engine::arrow::compute::{cast, filter_record_batch, take_record_batch};
use edgeflow_engine::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::timely::container::CapacityContainerBuilder;
use edgeflow_engine::timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use edgeflow_engine::timely::dataflow::operators::Capability;
use edgeflow_engine::timely::dataflow::operators::generic::OutputBuilder;
use edgeflow_engine::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use edgeflow_engine::{
    Batch, BatchStream, DataflowOperator, EventTime, OperatorContext, OptionError, key_exchange,
    parse_options,
};

use crate::input_stash::{InputStash, Stashed};
use crate::{OperatorConfig, OperatorKind};

mod config;
mod dedup;
mod dedup_times;
mod held;
pub mod interpolate;
pub mod keyed;
mod keyed_config;
mod rowwise;
mod timestamps;
mod units;

pub use config::{
    CalibrateSpec, CleanConfig, ConvertSpec, DedupSpec, FillSpec, NormalizeSpec, NumberOrField,
    TimestampSpec,
};
use held::HeldRows;
use keyed::{KeyedPlan, KeyedState};
use rowwise::{ClipRule, LinearRule, NormalizeRule, NullRule, RangeRule};
use timestamps::TimestampParser;

/// The `clean` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "clean",
    summary: "Repairs or rejects dirty rows: nulls, ranges, duplicates, jumps, units, formats",
    parse,
};

/// Name of the side output carrying rejected rows.
pub const REJECTED: &str = "rejected";

/// Name of the column of the `rejected` side output saying why.
pub const REASON: &str = "reason";

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<CleanConfig>(table)?))
}

impl OperatorConfig for CleanConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        Ok(Arc::new(self.build(inputs)?))
    }
}

/// A reason a row can be rejected for: the metric it counts under and the text of the
/// `reason` column.
#[derive(Clone, Debug)]
pub(crate) struct Label {
    pub(crate) metric: &'static str,
    pub(crate) text: String,
}

/// `timestamps` for one field.
#[derive(Clone, Debug)]
pub(crate) struct TimestampRule {
    pub(crate) input: usize,
    pub(crate) output: usize,
    pub(crate) parser: TimestampParser,
    pub(crate) label: u16,
}

/// Everything `clean` does, resolved against the input schema.
#[derive(Debug)]
pub(crate) struct CleanPlan {
    /// The input after the transforms, before the `<field>_filled` columns.
    pub(crate) transformed_schema: SchemaRef,
    pub(crate) output_schema: SchemaRef,
    pub(crate) rejected_schema: SchemaRef,
    pub(crate) event_time: Option<usize>,
    /// Index 0 is "kept"; rules refer to the others by index.
    pub(crate) labels: Vec<Label>,
    pub(crate) timestamps: Vec<TimestampRule>,
    pub(crate) normalize: Vec<NormalizeRule>,
    pub(crate) linear: Vec<LinearRule>,
    pub(crate) nulls: Vec<NullRule>,
    pub(crate) ranges: Vec<RangeRule>,
    pub(crate) clips: Vec<ClipRule>,
    pub(crate) keyed: Option<Arc<KeyedPlan>>,
    /// Input columns rows are exchanged by (`None`: rows stay on their worker).
    pub(crate) exchange: Option<Vec<usize>>,
}

/// The planned `clean` operator.
#[derive(Clone, Debug)]
pub struct Clean {
    pub(crate) plan: Arc<CleanPlan>,
}

/// The per-worker state of a [`Clean`] (empty without per-key rules).
#[derive(Debug)]
pub struct CleanState {
    keyed: Option<KeyedState>,
    /// Rows a `linear` fill holds back.
    held: HeldRows,
}

impl CleanState {
    /// Rows held back by `linear` fills, waiting for a later reading.
    pub fn held_rows(&self) -> usize {
        self.held.len()
    }

    /// The timestamps (watermarks of the batches that brought them) of the held rows.
    pub fn held_stamps(&self) -> Vec<EventTime> {
        let mut stamps: Vec<EventTime> = self.held.stamps().collect();
        stamps.dedup();
        stamps
    }
}

/// The reason of each row of a batch, by label index (0: kept), allocated on first use.
#[derive(Debug)]
pub(crate) struct Reasons {
    rows: usize,
    labels: Option<Vec<u16>>,
}

impl Reasons {
    fn new(rows: usize) -> Self {
        Self { rows, labels: None }
    }

    pub(crate) fn get(&self, row: usize) -> u16 {
        self.labels.as_ref().map_or(0, |l| l[row])
    }

    /// Rejects `row` for `label` unless an earlier rule rejected it.
    pub(crate) fn set(&mut self, row: usize, label: u16) {
        let rows = self.rows;
        let slot = &mut self.labels.get_or_insert_with(|| vec![0; rows])[row];
        if *slot == 0 {
            *slot = label;
        }
    }

    /// Rejects the kept rows where `mask` is true (null reads as false).
    pub(crate) fn mark(&mut self, mask: &BooleanArray, label: u16) {
        if mask.true_count() == 0 {
            return;
        }
        // Visit the set bits only: rejections are rare.
        for row in mask.values().set_indices() {
            if mask.is_valid(row) {
                self.set(row, label);
            }
        }
    }

    fn any(&self) -> bool {
        self.labels
            .as_ref()
            .is_some_and(|l| l.iter().any(|&x| x != 0))
    }
}

/// What [`Clean::apply`] did to one batch.
#[derive(Debug, Default)]
pub struct CleanOutcome {
    /// The surviving rows (output schema), or `None` when none survive.
    pub rows: Option<RecordBatch>,
    /// The rejected rows as they arrived, with a `reason` column, or `None`.
    pub rejected: Option<RecordBatch>,
    /// Rejected rows per metric reason (`null_field`, `duplicate`, …), in rule order.
    pub dropped: Vec<(&'static str, usize)>,
    /// Values changed or noted per kind (`clipped`, `mapped`, `filled`, `unfilled`,
    /// `uncalibrated`, `dedup_unchecked`, `evicted_keys`, `fill_overflow`); zero counts are
    /// left out.
    pub changed: Vec<(&'static str, usize)>,
    /// Rows a `linear` fill held (from this batch or earlier ones) that leave now, each batch
    /// with the timestamp of the batch that brought its rows. Rows of this batch that are held
    /// are in neither `rows` nor `rejected`.
    pub released: Vec<(EventTime, RecordBatch)>,
}

impl CleanOutcome {
    /// The rows dropped for `reason` (0 if none).
    pub fn dropped(&self, reason: &str) -> usize {
        self.dropped
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }

    /// The values changed for `kind` (0 if none).
    pub fn changed(&self, kind: &str) -> usize {
        self.changed
            .iter()
            .filter(|(r, _)| *r == kind)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Clean {
    /// Fresh state for one worker.
    ///
    /// # Errors
    /// Only if Arrow cannot encode the key types, which planning rules out.
    pub fn new_state(&self) -> Result<CleanState, ArrowError> {
        let marker_base = self.plan.transformed_schema.fields().len();
        let held_columns = self.plan.keyed.as_ref().map_or_else(Vec::new, |keyed| {
            keyed
                .fills
                .iter()
                .enumerate()
                .map(|(i, rule)| (rule.column, marker_base + i))
                .collect()
        });
        Ok(CleanState {
            keyed: match &self.plan.keyed {
                Some(plan) => Some(KeyedState::new(plan.clone())?),
                None => None,
            },
            held: HeldRows::new(held_columns),
        })
    }

    /// Lets go what the input frontier passed (`None`: the input has ended, everything goes):
    /// expires per-key state, and returns the held rows whose wait is over, per stamp, with
    /// the counts of how they left (`filled`, `unfilled`, `fill_overflow`).
    ///
    /// # Errors
    /// Only if an Arrow kernel fails, which would be a bug.
    #[allow(clippy::type_complexity)]
    pub fn advance(
        &self,
        frontier: Option<EventTime>,
        state: &mut CleanState,
    ) -> Result<(Vec<(EventTime, RecordBatch)>, Vec<(&'static str, usize)>), ArrowError> {
        let Some(keyed) = state.keyed.as_mut() else {
            return Ok((Vec::new(), Vec::new()));
        };
        match frontier {
            Some(frontier) => keyed.expire(frontier as i64),
            None => keyed.clear(),
        }
        let mut changed = Vec::new();
        let released = release(keyed, &mut state.held, &mut changed)?;
        changed.retain(|(_, n)| *n > 0);
        Ok((released, changed))
    }

    /// The schema of the `rejected` side output: the input's plus `reason`.
    pub fn rejected_schema(&self) -> SchemaRef {
        self.plan.rejected_schema.clone()
    }

    /// Cleans one batch that arrived with watermark `watermark` (its timely timestamp).
    ///
    /// # Errors
    /// Only if an Arrow kernel fails, which means the batch does not match the planned schema.
    pub fn apply(
        &self,
        input: RecordBatch,
        watermark: EventTime,
        state: &mut CleanState,
    ) -> Result<CleanOutcome, ArrowError> {
        let plan = &self.plan;
        let total = input.num_rows();
        let mut reasons = Reasons::new(total);
        let mut changed: Vec<(&'static str, usize)> = Vec::new();
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        columns.resize(plan.transformed_schema.fields().len(), columns[0].clone());

        for rule in &plan.timestamps {
            let (parsed, failed) = rule.parser.parse_column(input.column(rule.input))?;
            for row in failed {
                reasons.set(row, rule.label);
            }
            columns[rule.output] = parsed;
        }
        for rule in &plan.normalize {
            let (column, mapped) = rowwise::normalize(rule, &columns[rule.column])?;
            columns[rule.column] = column;
            changed.push(("mapped", mapped));
        }
        for rule in &plan.linear {
            let (column, missing) = rowwise::linear(rule, &columns)?;
            let target = match rule {
                LinearRule::Convert { column, .. } | LinearRule::Calibrate { column, .. } => {
                    *column
                }
            };
            columns[target] = column;
            changed.push(("uncalibrated", missing));
        }
        for rule in &plan.nulls {
            rowwise::check_null(rule, &columns, &mut reasons)?;
        }
        for rule in &plan.ranges {
            rowwise::check_range(rule, &columns, &mut reasons)?;
        }
        for rule in &plan.clips {
            let (column, clipped) = rowwise::clip(rule, &columns[rule.column])?;
            columns[rule.column] = column;
            changed.push(("clipped", clipped));
        }

        let mut held: Vec<(usize, u64, u8)> = Vec::new();
        if let (Some(keyed_plan), Some(keyed)) = (&plan.keyed, state.keyed.as_mut()) {
            let transformed =
                RecordBatch::try_new(plan.transformed_schema.clone(), columns.clone())?;
            let times = match plan.event_time {
                Some(c) => Some(cast(
                    input.column(c),
                    &edgeflow_engine::schema::timestamp_type(),
                )?),
                None => None,
            };
            let times = times
                .as_ref()
                .map(|t| t.as_primitive::<TimestampMillisecondType>());
            let outcome = keyed.apply(&transformed, times, watermark as i64, &mut reasons)?;
            for (rule, (values, marks)) in keyed_plan.fills.iter().zip(outcome.fills) {
                let data_type = columns[rule.column].data_type().clone();
                columns[rule.column] = cast(&values, &data_type)?;
                columns.push(Arc::new(marks));
            }
            changed.push(("filled", outcome.filled));
            changed.push(("unfilled", outcome.unfilled));
            changed.push(("dedup_unchecked", outcome.dedup_unchecked));
            changed.push(("evicted_keys", outcome.evicted_keys));
            held = outcome.held;
        }

        let output = RecordBatch::try_new(plan.output_schema.clone(), columns)?;
        let mut released = Vec::new();
        if let Some(keyed) = state.keyed.as_mut() {
            if let Some(&(_, first, _)) = held.first() {
                let rows = UInt32Array::from_iter_values(held.iter().map(|h| h.0 as u32));
                let waiting = held.iter().map(|h| h.2).collect();
                state.held.hold(
                    watermark,
                    take_record_batch(&output, &rows)?,
                    first,
                    waiting,
                );
            }
            released = release(keyed, &mut state.held, &mut changed)?;
        }
        changed.retain(|(_, n)| *n > 0);
        if !reasons.any() && held.is_empty() {
            return Ok(CleanOutcome {
                rows: (total > 0).then_some(output),
                rejected: None,
                dropped: Vec::new(),
                changed,
                released,
            });
        }
        let labels = reasons.labels.unwrap_or_else(|| vec![0; total]);
        let mut keep: Vec<bool> = labels.iter().map(|&l| l == 0).collect();
        for &(row, _, _) in &held {
            keep[row] = false;
        }
        let kept = keep.iter().filter(|&&k| k).count();
        let keep = BooleanArray::new(BooleanBuffer::collect_bool(total, |i| keep[i]), None);
        let reject =
            BooleanArray::new(BooleanBuffer::collect_bool(total, |i| labels[i] != 0), None);
        let mut counts = vec![0usize; plan.labels.len()];
        for &label in &labels {
            counts[usize::from(label)] += 1;
        }
        let mut dropped: Vec<(&'static str, usize)> = Vec::new();
        for (label, &count) in plan.labels.iter().zip(&counts).skip(1) {
            if count == 0 {
                continue;
            }
            match dropped.iter_mut().find(|(m, _)| *m == label.metric) {
                Some((_, n)) => *n += count,
                None => dropped.push((label.metric, count)),
            }
        }
        let rows = (kept > 0)
            .then(|| filter_record_batch(&output, &keep))
            .transpose()?;
        if dropped.is_empty() {
            return Ok(CleanOutcome {
                rows,
                rejected: None,
                dropped,
                changed,
                released,
            });
        }
        let reason_column: StringArray = labels
            .iter()
            .filter(|&&l| l != 0)
            .map(|&l| Some(plan.labels[usize::from(l)].text.as_str()))
            .collect();
        let mut rejected_columns = filter_record_batch(&input, &reject)?.columns().to_vec();
        rejected_columns.push(Arc::new(reason_column));
        let rejected = RecordBatch::try_new(plan.rejected_schema.clone(), rejected_columns)?;
        Ok(CleanOutcome {
            rows,
            rejected: Some(rejected),
            dropped,
            changed,
            released,
        })
    }
}

/// Applies the values found for held rows and takes the rows that are complete; counts them
/// into `changed`.
fn release(
    keyed: &mut KeyedState,
    held: &mut HeldRows,
    changed: &mut Vec<(&'static str, usize)>,
) -> Result<Vec<(EventTime, RecordBatch)>, ArrowError> {
    let (resolutions, overflow) = keyed.take_resolved();
    if resolutions.is_empty() {
        return Ok(Vec::new());
    }
    let filled = resolutions.iter().filter(|r| r.value.is_some()).count();
    for resolution in &resolutions {
        let known = held.resolve(resolution);
        // Every resolution names a row held earlier; anything else would be a bug.
        debug_assert!(known, "unknown held row {resolution:?}");
    }
    for (kind, n) in [
        ("filled", filled),
        ("unfilled", resolutions.len() - filled),
        ("fill_overflow", overflow),
    ] {
        match changed.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += n,
            None => changed.push((kind, n)),
        }
    }
    held.drain()
}

const BUG: &str = "clean kernels on a batch of the planned schema cannot fail: \
                   this is a bug, please report it";

impl DataflowOperator for Clean {
    fn output_schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(REJECTED.to_string(), self.plan.rejected_schema.clone())]
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
            .expect("the planner gives a 'clean' operator exactly one input");
        match &self.plan.exchange {
            Some(columns) => self.wire(input, key_exchange(columns.clone()), ctx),
            None => self.wire(input, Pipeline, ctx),
        }
    }
}

impl Clean {
    /// Adds the timely operator, reading `input` through `pact`.
    fn wire<'scope, P>(
        &self,
        input: BatchStream<'scope>,
        pact: P,
        ctx: &OperatorContext,
    ) -> Vec<BatchStream<'scope>>
    where
        P: ParallelizationContract<EventTime, Batch>,
        P::Puller: 'static,
    {
        let clean = self.clone();
        let metrics = ctx.metrics.clone();
        let memory = ctx.memory.clone();
        let mut builder = OperatorBuilder::new("Clean".to_string(), input.scope());
        let activator = input.scope().activator_for(builder.operator_info().address);
        let mut input = builder.new_input(input, pact);
        let (main, main_stream) = builder.new_output::<Batch>();
        let (rejected, rejected_stream) = builder.new_output::<Batch>();
        let mut main = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(main);
        let mut rejected = OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(rejected);

        builder.build(move |initial| {
            // Output is sent at the timestamps of input batches; rows a `linear` fill holds
            // keep a capability for the timestamp of their batch until they leave.
            drop(initial);
            let mut state = clean.new_state().expect(BUG);
            let mut held_caps: BTreeMap<EventTime, Capability<EventTime>> = BTreeMap::new();
            let (mut reported_rows, mut reported_bytes) = (0usize, 0u64);
            let mut stash = InputStash::default();
            move |frontiers| {
                let mut main = main.activate();
                let mut rejected = rejected.activate();
                let (main_port, rejected_port) = (main.output_index(), rejected.output_index());
                // Read all that waits, work through a bounded part (see `crate::input_stash`).
                stash.read(&mut input, main_port, rejected_port);
                for Stashed {
                    main: capability,
                    side: rejected_capability,
                    rows,
                } in stash.this_activation()
                {
                    let watermark = *capability.time();
                    metrics.add_rows_in(rows.num_rows());
                    let outcome = clean.apply(rows, watermark, &mut state).expect(BUG);
                    for (reason, n) in &outcome.dropped {
                        metrics.count_dropped(reason, *n);
                    }
                    for (kind, n) in &outcome.changed {
                        metrics.add_value(kind, *n as u64);
                    }
                    if let Some(rows) = outcome.rows {
                        metrics.add_rows_out(rows.num_rows());
                        main.session_with_builder(&capability)
                            .give_container(&mut Batch::new(rows));
                    }
                    if let Some(rows) = outcome.rejected {
                        rejected
                            .session_with_builder(&rejected_capability)
                            .give_container(&mut Batch::new(rows));
                    }
                    if state.held_stamps().contains(&watermark) {
                        held_caps
                            .entry(watermark)
                            .or_insert_with(|| capability.clone());
                    }
                    for (stamp, rows) in outcome.released {
                        metrics.add_rows_out(rows.num_rows());
                        let cap = match held_caps.get(&stamp) {
                            Some(cap) => cap.clone(),
                            None => capability.delayed(&stamp),
                        };
                        main.session_with_builder(&cap)
                            .give_container(&mut Batch::new(rows));
                    }
                }
                if !stash.is_empty() {
                    activator.activate();
                }
                if state.keyed.is_some() {
                    let frontier = stash.earliest(&frontiers[0]);
                    let (released, changed) = clean.advance(frontier, &mut state).expect(BUG);
                    for (kind, n) in &changed {
                        metrics.add_value(kind, *n as u64);
                    }
                    for (stamp, rows) in released {
                        metrics.add_rows_out(rows.num_rows());
                        let cap = held_caps.get(&stamp).expect(BUG);
                        main.session_with_builder(cap)
                            .give_container(&mut Batch::new(rows));
                    }
                    let stamps = state.held_stamps();
                    held_caps.retain(|stamp, _| stamps.contains(stamp));
                    let keyed = state.keyed.as_ref().expect(BUG);
                    // Report the state held to the metrics and the pipeline's budget.
                    let (rows, bytes) = (
                        keyed.entries() + state.held.len(),
                        (keyed.state_bytes() + state.held.bytes()) as u64,
                    );
                    metrics.add_state_rows(rows as i64 - reported_rows as i64);
                    metrics.add_state_bytes(bytes as i64 - reported_bytes as i64);
                    memory.adjust(reported_bytes, bytes);
                    (reported_rows, reported_bytes) = (rows, bytes);
                }
            }
        });
        vec![main_stream, rejected_stream]
    }
}

#[cfg(test)]
mod tests;
