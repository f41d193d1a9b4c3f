//! The per-key rules of `clean`: `dedup`, `max_rate_of_change` and `fill`.
//!
//! Rows reach these rules after the row-local ones, exchanged so that every key lives on one
//! worker, and are taken one at a time in arrival order. Every piece of state carries the
//! event time it was last fed, and is **bounded**:
//!
//! * `dedup` remembers each combination of its columns with the largest event time seen for
//!   it, and forgets it once the watermark passes that time by `horizon` (see
//!   `dedup.rs` for the allocation-free table and its sweeps). A row older than
//!   `watermark - horizon` can no longer be checked: it passes and is counted as
//!   `dedup_unchecked`.
//! * `max_rate_of_change` and `fill` keep, per key, the latest reading of each field (the
//!   `last` latest for `fill` with `mean`), and forget the key once the watermark passes its
//!   latest event time by `state_ttl` (at least the largest `max_gap`).
//! * `fill` with `linear` also holds, per key and field, the rows waiting for the next
//!   reading (at most `max_held`), each until the watermark passes its event time by `max_gap`
//!   (see [`super::interpolate`]); the rows themselves wait in the operator's held store.
//! * Past `max_keys` keys (or remembered `dedup` combinations), the oldest are forgotten at
//!   once, down to 90 % of `max_keys`, and counted as `evicted_keys` (rows a forgotten key held leave unfilled).
//!
//! Expiry is decided by the watermark of the batch that brings a row (the timestamp it
//! carries), so results do not depend on scheduling or on the number of workers; memory is
//! reclaimed in sweeps every quarter of the time-to-live.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ahash::RandomState;
use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::arrow::row::{RowConverter, Rows, SortField};

use super::Reasons;
use super::dedup::{DedupEncoder, DedupMemory, DedupSet, TimeDedup, Verdict};
use super::interpolate::{self, Decision, Pending, Resolution};

/// `dedup`: the columns compared and how long a combination is remembered.
#[derive(Clone, Debug)]
pub(crate) struct DedupRule {
    pub(crate) columns: Vec<usize>,
    /// The event-time column, when it is one of `columns`: the others are then remembered with
    /// a set of times each (see `dedup_times.rs`).
    pub(crate) by_time: Option<usize>,
    pub(crate) horizon_ms: i64,
    pub(crate) label: u16,
}

impl DedupRule {
    /// The compared columns encoded as bytes: all of them, or all but the event time.
    pub(crate) fn compared_besides_time(&self) -> Vec<usize> {
        self.columns
            .iter()
            .copied()
            .filter(|&c| Some(c) != self.by_time)
            .collect()
    }
}

/// One field of `max_rate_of_change`.
#[derive(Clone, Debug)]
pub(crate) struct RateRule {
    pub(crate) column: usize,
    /// Largest change allowed per second, in the field's unit.
    pub(crate) per_second: f64,
    pub(crate) label: u16,
}

/// How `fill` finds a value for a missing reading.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FillMethod {
    /// The key's latest reading.
    Previous,
    /// The mean of the key's `last` latest readings.
    Mean { last: usize },
    /// A fixed value (no state).
    Constant(f64),
    /// Interpolated between the readings before and after; at most `max_held` rows held per
    /// key while they wait for the next reading.
    Linear { max_held: usize },
}

/// One field of `fill`.
#[derive(Clone, Debug)]
pub(crate) struct FillRule {
    pub(crate) column: usize,
    pub(crate) method: FillMethod,
    pub(crate) max_gap_ms: i64,
    /// An integer field: interpolated values are rounded.
    pub(crate) integer: bool,
}

impl FillRule {
    fn depth(&self) -> usize {
        match self.method {
            FillMethod::Previous => 1,
            FillMethod::Mean { last } => last,
            FillMethod::Constant(_) => 0,
            FillMethod::Linear { .. } => 2,
        }
    }
}

/// The per-key rules of one `clean` operator.
#[derive(Clone, Debug)]
pub(crate) struct KeyedPlan {
    /// Key columns (in the transformed batch).
    pub(crate) key: Vec<usize>,
    pub(crate) key_fields: Vec<SortField>,
    pub(crate) dedup: Option<DedupRule>,
    /// Types of the dedup's compared columns besides the event time.
    pub(crate) dedup_types: Vec<DataType>,
    pub(crate) rates: Vec<RateRule>,
    pub(crate) fills: Vec<FillRule>,
    /// How long a key's readings are kept after its latest event time.
    pub(crate) state_ttl_ms: i64,
    pub(crate) max_keys: usize,
}

impl KeyedPlan {
    fn uses_keys(&self) -> bool {
        !self.rates.is_empty()
            || self
                .fills
                .iter()
                .any(|f| !matches!(f.method, FillMethod::Constant(_)))
    }
}

/// The latest readings of one key.
#[derive(Debug)]
struct KeyEntry {
    /// Largest event time of an accepted row.
    latest: i64,
    /// Per rate rule: the latest accepted reading `(time, value)`.
    rates: Vec<Option<(i64, f64)>>,
    /// Per fill rule: up to `depth` latest readings, oldest first.
    fills: Vec<VecDeque<(i64, f64)>>,
    /// Per fill rule: the rows a `linear` fill holds, in arrival order (all later than every
    /// remembered reading of the key).
    pending: Vec<Vec<Pending>>,
}

/// What the per-key rules did to one batch besides rejecting rows.
#[derive(Debug, Default)]
pub(crate) struct KeyedOutcome {
    /// Per fill rule: the filled column (Float64) and where it was filled.
    pub(crate) fills: Vec<(ArrayRef, BooleanArray)>,
    pub(crate) filled: usize,
    pub(crate) unfilled: usize,
    pub(crate) dedup_unchecked: usize,
    pub(crate) evicted_keys: usize,
    /// Rows held by `linear` fills: `(row, ticket, fills waiting)`, in row order (tickets
    /// consecutive from the first).
    pub(crate) held: Vec<(usize, u64, u8)>,
}

/// The state of the per-key rules on one worker.
pub(crate) struct KeyedState {
    plan: Arc<KeyedPlan>,
    key_converter: RowConverter,
    dedup_encoder: Option<DedupEncoder>,
    /// Dedup: combination → largest event time seen.
    seen: DedupMemory,
    keys: HashMap<Box<[u8]>, KeyEntry, RandomState>,
    last_sweep: i64,
    /// Held rows by `(deadline, ticket, fill rule)` → their key, to let them go unfilled when
    /// the watermark passes the deadline.
    deadlines: BTreeMap<(i64, u64, usize), Box<[u8]>>,
    next_ticket: u64,
    /// Values found for held rows, not yet taken by [`Self::take_resolved`].
    resolved: Vec<Resolution>,
    /// Held rows let go because a key held `max_held` already.
    overflow: usize,
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("seen", &self.seen)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyedState {
    pub(crate) fn new(plan: Arc<KeyedPlan>) -> Result<Self, ArrowError> {
        let key_converter = RowConverter::new(plan.key_fields.clone())?;
        let dedup_encoder = match &plan.dedup {
            Some(dedup) => Some(DedupEncoder::new(
                dedup.compared_besides_time(),
                &plan.dedup_types,
            )?),
            None => None,
        };
        let hasher = RandomState::new();
        let horizon = plan.dedup.as_ref().map_or(0, |d| d.horizon_ms);
        let seen = match plan.dedup.as_ref().and_then(|d| d.by_time) {
            Some(_) => DedupMemory::Times(TimeDedup::new(horizon, hasher.clone())),
            None => DedupMemory::Combos(DedupSet::new(horizon, hasher.clone())),
        };
        Ok(Self {
            plan,
            key_converter,
            dedup_encoder,
            seen,
            keys: HashMap::with_hasher(hasher),
            last_sweep: i64::MIN,
            deadlines: BTreeMap::new(),
            next_ticket: 0,
            resolved: Vec::new(),
            overflow: 0,
        })
    }

    /// Combinations, keys and held rows.
    pub(crate) fn entries(&self) -> usize {
        self.seen.len() + self.keys.len() + self.deadlines.len()
    }

    /// The values found for held rows since the last call (`None`: left unfilled), and how
    /// many of them left because a key held too many.
    pub(crate) fn take_resolved(&mut self) -> (Vec<Resolution>, usize) {
        (
            std::mem::take(&mut self.resolved),
            std::mem::take(&mut self.overflow),
        )
    }

    /// A rough size of the state in bytes (keys, values and map overhead).
    pub(crate) fn state_bytes(&self) -> usize {
        let seen = self.seen.bytes();
        let keys: usize = self
            .keys
            .iter()
            .map(|(k, e)| {
                k.len()
                    + 64
                    + 24 * e.rates.len()
                    + e.fills.iter().map(|f| 32 + 16 * f.len()).sum::<usize>()
                    + e.pending.iter().map(|p| 24 + 16 * p.len()).sum::<usize>()
            })
            .sum();
        let deadlines: usize = self.deadlines.values().map(|k| 64 + k.len()).sum();
        seen + keys + deadlines
    }

    /// Forgets what the watermark has passed by more than its time-to-live.
    pub(crate) fn expire(&mut self, watermark: i64) {
        self.seen.expire(watermark);
        // Held rows whose next reading did not come within max_gap leave unfilled. This
        // comes before the sweep: a key is only forgotten after its held rows are gone.
        while let Some(entry) = self.deadlines.first_entry() {
            let (deadline, ticket, rule) = *entry.key();
            if deadline >= watermark {
                break;
            }
            let key = entry.remove();
            if let Some(state) = self.keys.get_mut(&key) {
                state.pending[rule].retain(|p| p.ticket != ticket);
            }
            self.resolved.push(Resolution {
                ticket,
                rule,
                value: None,
            });
        }
        let ttl = self.plan.state_ttl_ms;
        if watermark.saturating_sub(self.last_sweep) >= (ttl / 4).max(1) {
            let limit = watermark.saturating_sub(ttl);
            let (plan, deadlines, resolved) = (&self.plan, &mut self.deadlines, &mut self.resolved);
            self.keys.retain(|_, entry| {
                let keep = entry.latest >= limit;
                if !keep {
                    let_go(plan, entry, deadlines, resolved);
                }
                keep
            });
            self.last_sweep = watermark;
        }
    }

    /// Forgets everything (the input has ended); held rows leave unfilled.
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
        for entry in self.keys.values_mut() {
            let_go(&self.plan, entry, &mut self.deadlines, &mut self.resolved);
        }
        self.keys.clear();
        self.deadlines.clear();
    }

    /// Applies the per-key rules to the rows of `batch` that `reasons` still keeps, in row
    /// order, marking rejected rows in `reasons`.
    pub(crate) fn apply(
        &mut self,
        batch: &RecordBatch,
        times: Option<&TimestampMillisecondArray>,
        watermark: i64,
        reasons: &mut Reasons,
    ) -> Result<KeyedOutcome, ArrowError> {
        let plan = self.plan.clone();
        self.expire(watermark);
        let rows = batch.num_rows();
        let mut outcome = KeyedOutcome::default();

        let dedup_bytes = match &self.dedup_encoder {
            Some(encoder) => Some(encoder.encode(batch)?),
            None => None,
        };
        let key_rows: Option<Rows> = if plan.uses_keys() {
            let columns: Vec<ArrayRef> =
                plan.key.iter().map(|&c| batch.column(c).clone()).collect();
            Some(self.key_converter.convert_columns(&columns)?)
        } else {
            None
        };
        let rate_values = plan
            .rates
            .iter()
            .map(|r| as_f64(batch.column(r.column)))
            .collect::<Result<Vec<_>, _>>()?;
        let fill_values = plan
            .fills
            .iter()
            .map(|f| as_f64(batch.column(f.column)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut filled: Vec<Vec<Option<f64>>> = fill_values
            .iter()
            .map(|v| v.iter().map(|x| x.filter(|x| !x.is_nan())).collect())
            .collect();
        let mut marks: Vec<Vec<bool>> = vec![vec![false; rows]; plan.fills.len()];
        let ttl = plan.state_ttl_ms;

        for row in 0..rows {
            if reasons.get(row) != 0 {
                continue;
            }
            // Rows without an event time cannot be placed in time: the per-key rules let them
            // through untouched.
            let Some(time) = times.and_then(|t| t.is_valid(row).then(|| t.value(row))) else {
                continue;
            };

            if let (Some(dedup), Some(compared)) = (&plan.dedup, &dedup_bytes) {
                match self.seen.check(compared.row(row), time, watermark) {
                    Verdict::New => {}
                    Verdict::Duplicate => {
                        reasons.set(row, dedup.label);
                        continue;
                    }
                    Verdict::Unchecked => outcome.dedup_unchecked += 1,
                }
            }

            let Some(keys) = &key_rows else { continue };
            let key = keys.row(row);
            let fresh = || KeyEntry {
                latest: time,
                rates: vec![None; plan.rates.len()],
                fills: plan
                    .fills
                    .iter()
                    .map(|f| VecDeque::with_capacity(f.depth()))
                    .collect(),
                pending: vec![Vec::new(); plan.fills.len()],
            };
            let entry = match self.keys.get_mut(key.as_ref()) {
                Some(entry) if entry.latest.saturating_add(ttl) >= watermark => entry,
                Some(entry) => {
                    let_go(&plan, entry, &mut self.deadlines, &mut self.resolved);
                    *entry = fresh();
                    entry
                }
                None => self.keys.entry(key.as_ref().into()).or_insert_with(fresh),
            };

            // max_rate_of_change: compared with the latest accepted reading of the key.
            let mut rejected = false;
            for (index, (rule, values)) in plan.rates.iter().zip(&rate_values).enumerate() {
                let (Some(value), Some((then, previous))) =
                    (valid(values, row), entry.rates[index])
                else {
                    continue;
                };
                let dt = (time - then).unsigned_abs() as f64 / 1_000.0;
                let change = (value - previous).abs();
                let too_fast = if dt == 0.0 {
                    change > 0.0
                } else {
                    change / dt > rule.per_second
                };
                if too_fast {
                    reasons.set(row, rule.label);
                    rejected = true;
                    break;
                }
            }
            if rejected {
                continue;
            }
            for (index, values) in rate_values.iter().enumerate() {
                if let Some(value) = valid(values, row) {
                    let slot = &mut entry.rates[index];
                    if slot.is_none_or(|(then, _)| time >= then) {
                        *slot = Some((time, value));
                    }
                }
            }

            // fill: readings feed the state; missing ones are filled from it.
            let mut waiting = 0u8;
            for (index, rule) in plan.fills.iter().enumerate() {
                let history = &mut entry.fills[index];
                match filled[index][row] {
                    Some(value) => {
                        let pending = &mut entry.pending[index];
                        if !pending.is_empty() {
                            // The next reading: it ends the wait of the rows it follows.
                            let before = history.back().copied();
                            pending.retain(|p| {
                                if time < p.time {
                                    return true;
                                }
                                let filled = before
                                    .filter(|_| time - p.time <= rule.max_gap_ms)
                                    .map(|b| {
                                        interpolate::between(b, (time, value), p.time, rule.integer)
                                    });
                                self.deadlines.remove(&(
                                    p.time.saturating_add(rule.max_gap_ms),
                                    p.ticket,
                                    index,
                                ));
                                self.resolved.push(Resolution {
                                    ticket: p.ticket,
                                    rule: index,
                                    value: filled,
                                });
                                false
                            });
                        }
                        remember_reading(history, rule.depth(), time, value);
                    }
                    None => {
                        let value = match rule.method {
                            FillMethod::Linear { max_held } => {
                                let history = history.make_contiguous();
                                match interpolate::decide(
                                    history,
                                    time,
                                    rule.max_gap_ms,
                                    rule.integer,
                                ) {
                                    Decision::Now(value) => value,
                                    Decision::Hold => {
                                        let pending = &mut entry.pending[index];
                                        if pending.len() >= max_held {
                                            let oldest = pending.remove(0);
                                            self.deadlines.remove(&(
                                                oldest.time.saturating_add(rule.max_gap_ms),
                                                oldest.ticket,
                                                index,
                                            ));
                                            self.resolved.push(Resolution {
                                                ticket: oldest.ticket,
                                                rule: index,
                                                value: None,
                                            });
                                            self.overflow += 1;
                                        }
                                        if waiting == 0 {
                                            outcome.held.push((row, self.next_ticket, 0));
                                            self.next_ticket += 1;
                                        }
                                        waiting += 1;
                                        let ticket = self.next_ticket - 1;
                                        pending.push(Pending { ticket, time });
                                        self.deadlines.insert(
                                            (time.saturating_add(rule.max_gap_ms), ticket, index),
                                            key.as_ref().into(),
                                        );
                                        continue;
                                    }
                                }
                            }
                            FillMethod::Constant(value) => Some(value),
                            FillMethod::Previous => history
                                .back()
                                .filter(|(then, _)| (time - then).abs() <= rule.max_gap_ms)
                                .map(|&(_, v)| v),
                            FillMethod::Mean { .. } => {
                                let near: Vec<f64> = history
                                    .iter()
                                    .filter(|(then, _)| (time - then).abs() <= rule.max_gap_ms)
                                    .map(|&(_, v)| v)
                                    .collect();
                                (!near.is_empty())
                                    .then(|| near.iter().sum::<f64>() / near.len() as f64)
                            }
                        };
                        if value.is_some() {
                            filled[index][row] = value;
                            marks[index][row] = true;
                            outcome.filled += 1;
                        } else {
                            outcome.unfilled += 1;
                        }
                    }
                }
            }
            if waiting > 0
                && let Some(last) = outcome.held.last_mut()
            {
                last.2 = waiting;
            }
            entry.latest = entry.latest.max(time);
        }

        // Constant fills need no key; rows that skipped the key loop above (no per-key rule
        // but a constant fill) are filled here.
        if key_rows.is_none() {
            for (index, rule) in plan.fills.iter().enumerate() {
                if let FillMethod::Constant(value) = rule.method {
                    for row in 0..rows {
                        if reasons.get(row) == 0 && filled[index][row].is_none() {
                            filled[index][row] = Some(value);
                            marks[index][row] = true;
                            outcome.filled += 1;
                        }
                    }
                }
            }
        }

        outcome.fills = filled
            .into_iter()
            .zip(marks)
            .map(|(values, marks)| {
                (
                    Arc::new(Float64Array::from(values)) as ArrayRef,
                    BooleanArray::from(marks),
                )
            })
            .collect();
        outcome.evicted_keys = self.enforce_max_keys();
        Ok(outcome)
    }

    /// Forgets the oldest keys and combinations beyond `max_keys`; returns how many.
    fn enforce_max_keys(&mut self) -> usize {
        let max = self.plan.max_keys;
        let mut evicted = 0;
        if self.keys.len() > max {
            // Down to 90 %, so that a steady stream of new keys does not sort on every batch.
            let target = max - max / 10;
            let mut ages: Vec<(i64, Box<[u8]>)> = self
                .keys
                .iter()
                .map(|(k, e)| (e.latest, k.clone()))
                .collect();
            ages.sort_unstable();
            for (_, key) in ages.into_iter().take(self.keys.len() - target) {
                if let Some(mut entry) = self.keys.remove(&key) {
                    let_go(
                        &self.plan,
                        &mut entry,
                        &mut self.deadlines,
                        &mut self.resolved,
                    );
                }
                evicted += 1;
            }
        }
        evicted + self.seen.enforce_max(max)
    }
}

/// Lets the rows a key holds go unfilled (the key is forgotten).
fn let_go(
    plan: &KeyedPlan,
    entry: &mut KeyEntry,
    deadlines: &mut BTreeMap<(i64, u64, usize), Box<[u8]>>,
    resolved: &mut Vec<Resolution>,
) {
    for (rule, pending) in entry.pending.iter_mut().enumerate() {
        for p in pending.drain(..) {
            deadlines.remove(&(
                p.time.saturating_add(plan.fills[rule].max_gap_ms),
                p.ticket,
                rule,
            ));
            resolved.push(Resolution {
                ticket: p.ticket,
                rule,
                value: None,
            });
        }
    }
}

/// Keeps the `depth` latest readings by event time, oldest first.
fn remember_reading(history: &mut VecDeque<(i64, f64)>, depth: usize, time: i64, value: f64) {
    if depth == 0 {
        return;
    }
    if history.len() == depth && history.front().is_some_and(|&(t, _)| time < t) {
        return;
    }
    let at = history.partition_point(|&(t, _)| t <= time);
    history.insert(at, (time, value));
    if history.len() > depth {
        history.pop_front();
    }
}

/// The value at `row`, unless null or NaN.
fn valid(values: &Float64Array, row: usize) -> Option<f64> {
    (values.is_valid(row) && !values.value(row).is_nan()).then(|| values.value(row))
}

fn as_f64(column: &ArrayRef) -> Result<Float64Array, ArrowError> {
    Ok(cast(column, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_latest_readings_in_time_order() {
        let mut h = VecDeque::new();
        for (t, v) in [(5, 5.0), (1, 1.0), (9, 9.0), (7, 7.0), (0, 0.0)] {
            remember_reading(&mut h, 3, t, v);
        }
        assert_eq!(
            h.iter().copied().collect::<Vec<_>>(),
            [(5, 5.0), (7, 7.0), (9, 9.0)]
        );
        let mut h = VecDeque::new();
        remember_reading(&mut h, 1, 5, 5.0);
        remember_reading(&mut h, 1, 3, 3.0);
        assert_eq!(h.back(), Some(&(5, 5.0)));
    }
}
