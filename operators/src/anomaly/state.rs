//! [`AnomalyState`]: one worker's anomaly state, without timely. The operator
//! ([`super::operator`]) hands it batches and tells it when the watermark moves.
//!
//! # How rows flow
//!
//! 1. [`AnomalyState::absorb`] splits a batch into rows without event time (dropped and
//!    counted), late rows (event time below the batch's watermark: returned for the `late`
//!    side output, since their key may already have judged later rows) and on-time rows,
//!    which are buffered.
//! 2. [`AnomalyState::advance`] (the watermark reached `w`) takes the buffered rows with time
//!    below `w`, which no later row can precede, evaluates `value`, maps rows to key ids and
//!    feeds each key its rows sorted by (time, arrival). Results therefore do not depend on
//!    arrival order, batch boundaries or the number of workers.
//! 3. With `gap`, each key has a deadline (its last row's time plus the duration). A row after
//!    the deadline, or a watermark past it, emits one synthetic row for the silence: the key
//!    columns, the deadline as event time, the other input columns null.
//!
//! State: per key its detector (bounded windows), key values and gap deadline; plus the rows
//! inside the watermark lag. Past `max_keys` keys (or while the pipeline is over its memory
//! limit) the least recently seen keys are forgotten ([`AnomalyState::shed_keys`]): their
//! learnt state and pending gap deadline go, and a forgotten key that comes back starts over,
//! warm-up included.

use std::collections::BTreeSet;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Float64Array, Float64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray, new_null_array,
};
use edgeflow_engine::arrow::compute::{cast, concat_batches, filter_record_batch};
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type};
use edgeflow_engine::arrow::error::ArrowError;

use super::detector::KeyDetector;
use super::keys::KeyTable;
use super::{AnomalyPlan, ValueSource};
pub(crate) use crate::reorder::Absorbed;
use crate::reorder::{Buffered, event_times, split_on_watermark, to_time};

/// What one [`AnomalyState::advance`] produced.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    /// Judged rows (input columns plus the four result columns), then any gap rows.
    pub rows: Option<RecordBatch>,
    /// Rows whose value was null or NaN (judged as not anomalous, score null).
    pub missing_value: usize,
    /// Values the `value` expression made null with a runtime error.
    pub expression_errors: usize,
}

/// One worker's anomaly state.
pub(crate) struct AnomalyState {
    plan: Arc<AnomalyPlan>,
    keys: KeyTable,
    /// Key id → its detector (a fresh one for a free id).
    detectors: Vec<KeyDetector>,
    /// Key id → estimated bytes of its detector, as last measured.
    key_bytes: Vec<usize>,
    state_bytes: usize,
    /// Key id → its gap deadline (last row's time + duration), with `gap`.
    deadline_of: Vec<Option<i64>>,
    deadlines: BTreeSet<(i64, u32)>,
    /// Key id → end of its cooldown (with `cooldown`).
    quiet_until: Vec<i64>,
    pending: Vec<Buffered>,
    pending_rows: usize,
    /// Scratch: the key id of each row being judged.
    ids: Vec<u32>,
}

/// The highest score a row may have during its key's cooldown: just under the 0.5 that means
/// "at the method's limit".
const COOLDOWN_SCORE: f64 = 0.499;

impl AnomalyState {
    /// Empty state for `plan`.
    pub(crate) fn new(plan: Arc<AnomalyPlan>) -> Result<Self, ArrowError> {
        let keys = KeyTable::new(&plan.input_schema, &plan.keys, plan.spec.gap_ms().is_some())?;
        Ok(Self {
            plan,
            keys,
            detectors: Vec::new(),
            key_bytes: Vec::new(),
            state_bytes: 0,
            deadline_of: Vec::new(),
            deadlines: BTreeSet::new(),
            quiet_until: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            ids: Vec::new(),
        })
    }

    /// Keys plus buffered rows: the rows of state this worker holds.
    pub(crate) fn state_rows(&self) -> usize {
        self.keys.held() + self.pending_rows
    }

    /// Keys held now.
    pub(crate) fn keys_held(&self) -> usize {
        self.keys.held()
    }

    /// Forgets the least recently seen keys when more than `limit` are held (down to 90 % of
    /// it): their detectors, cooldowns and gap deadlines. Returns how many were forgotten.
    pub(crate) fn shed_keys(&mut self, limit: usize) -> usize {
        let freed = self.keys.forget_least_recent(limit);
        for &id in &freed {
            let at = id as usize;
            self.state_bytes -= std::mem::take(&mut self.key_bytes[at]);
            self.detectors[at] = KeyDetector::new(&self.plan.spec);
            if let Some(deadline) = self.deadline_of[at].take() {
                self.deadlines.remove(&(deadline, id));
            }
            if let Some(quiet) = self.quiet_until.get_mut(at) {
                *quiet = i64::MIN;
            }
        }
        freed.len()
    }

    /// Estimated bytes of the keys' detectors (not counting buffered rows).
    pub(crate) fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Bytes of the buffered rows.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending
            .iter()
            .map(|b| b.rows.get_array_memory_size())
            .sum()
    }

    /// Whether output may still come without further input: buffered rows, or (with `gap`)
    /// keys whose silence the watermark may still reveal.
    pub(crate) fn needs_capability(&self) -> bool {
        self.pending_rows > 0 || !self.deadlines.is_empty()
    }

    /// Buffers the on-time rows of a batch that arrived with watermark `watermark`.
    pub(crate) fn absorb(
        &mut self,
        rows: &RecordBatch,
        watermark: u64,
    ) -> Result<Absorbed, ArrowError> {
        let (absorbed, buffered) = split_on_watermark(rows, self.plan.event_time, watermark)?;
        if let Some(buffered) = buffered {
            self.pending.push(buffered);
            self.pending_rows += absorbed.on_time;
        }
        Ok(absorbed)
    }

    /// Removes and returns the buffered rows with time below `bound` (all with `None`).
    fn take_ready(&mut self, bound: Option<i64>) -> Result<Option<RecordBatch>, ArrowError> {
        let mut ready = Vec::new();
        let mut kept = Vec::new();
        for buffered in std::mem::take(&mut self.pending) {
            match bound {
                None => ready.push(buffered.rows),
                Some(b) if buffered.max < b => ready.push(buffered.rows),
                Some(b) if buffered.min >= b => kept.push(buffered),
                Some(b) => {
                    let times = event_times(&buffered.rows, self.plan.event_time)?;
                    let below: BooleanArray = times.values().iter().map(|&t| Some(t < b)).collect();
                    let above: BooleanArray =
                        times.values().iter().map(|&t| Some(t >= b)).collect();
                    ready.push(filter_record_batch(&buffered.rows, &below)?);
                    let rest = filter_record_batch(&buffered.rows, &above)?;
                    let rest_times = event_times(&rest, self.plan.event_time)?;
                    let min = rest_times.values().iter().copied().min().unwrap_or(b);
                    kept.push(Buffered {
                        rows: rest,
                        min,
                        max: buffered.max,
                    });
                }
            }
        }
        self.pending = kept;
        self.pending_rows = self.pending.iter().map(|b| b.rows.num_rows()).sum();
        match ready.len() {
            0 => Ok(None),
            1 => Ok(ready.pop()),
            _ => Ok(Some(concat_batches(&ready[0].schema(), &ready)?)),
        }
    }

    /// Key ids of the rows (left in `self.ids`), creating state for new keys.
    fn key_ids(&mut self, rows: &RecordBatch) -> Result<(), ArrowError> {
        let mut ids = std::mem::take(&mut self.ids);
        let mut fresh = Vec::new();
        self.keys.ids(rows, &mut ids, |id| fresh.push(id))?;
        self.ids = ids;
        for id in fresh {
            self.add_key(id);
        }
        Ok(())
    }

    /// Sets up the state of key `id`, which is new or was freed by forgetting.
    fn add_key(&mut self, id: u32) {
        let at = id as usize;
        let detector = KeyDetector::new(&self.plan.spec);
        let bytes = detector.state_bytes() + self.plan.key_overhead;
        self.state_bytes += bytes;
        if at == self.detectors.len() {
            self.key_bytes.push(bytes);
            self.detectors.push(detector);
            self.deadline_of.push(None);
            if self.plan.cooldown_ms.is_some() {
                self.quiet_until.push(i64::MIN);
            }
        } else {
            // A freed id: shed_keys reset its detector and its deadline already.
            self.key_bytes[at] = bytes;
            self.detectors[at] = detector;
        }
    }

    /// The watermark reached `watermark` (`None`: the input ended). Judges the buffered rows
    /// below it, key by key in event-time order, and returns them with their results, then a
    /// row for each silence (`gap`) the watermark revealed.
    pub(crate) fn advance(&mut self, watermark: Option<u64>) -> Result<Flushed, ArrowError> {
        let bound = watermark.map(to_time);
        let mut flushed = Flushed::default();
        let mut gaps: Vec<(u32, i64, i64)> = Vec::new();
        let gap_ms = self.plan.spec.gap_ms();
        let mut judged = None;
        if let Some(rows) = self.take_ready(bound)? {
            judged = Some(self.judge(&rows, gap_ms, &mut gaps, &mut flushed)?);
        }
        if let Some(gap) = gap_ms {
            match bound {
                // A deadline below the watermark: no row came up to it.
                Some(bound) => {
                    while let Some(&(deadline, key)) = self.deadlines.first() {
                        if deadline >= bound {
                            break;
                        }
                        self.deadlines.pop_first();
                        self.deadline_of[key as usize] = None;
                        gaps.push((key, deadline - gap, deadline));
                    }
                }
                // The input ended: that is not a silence.
                None => {
                    self.deadlines.clear();
                    self.deadline_of.fill(None);
                }
            }
        }
        let gap_rows = if gaps.is_empty() {
            None
        } else {
            Some(self.gap_rows(&gaps)?)
        };
        flushed.rows = match (judged, gap_rows) {
            (Some(a), Some(b)) => Some(concat_batches(&self.plan.output_schema, &[a, b])?),
            (a, b) => a.or(b),
        };
        Ok(flushed)
    }

    /// Judges the ready rows and returns them with the result columns.
    fn judge(
        &mut self,
        rows: &RecordBatch,
        gap_ms: Option<i64>,
        gaps: &mut Vec<(u32, i64, i64)>,
        flushed: &mut Flushed,
    ) -> Result<RecordBatch, ArrowError> {
        let plan = self.plan.clone();
        let n = rows.num_rows();
        let times = event_times(rows, plan.event_time)?.values().clone();
        let values = match &plan.value {
            ValueSource::Column(index) => cast(rows.column(*index), &DataType::Float64)?,
            ValueSource::Expr(expr) => {
                let evaluated = expr.evaluate(rows)?;
                flushed.expression_errors = evaluated.errors;
                cast(&evaluated.values, &DataType::Float64)?
            }
        };
        let values: &Float64Array = values.as_primitive::<Float64Type>();
        let limit_arrays = plan
            .limit_columns
            .iter()
            .map(|&c| cast(rows.column(c), &DataType::Float64))
            .collect::<Result<Vec<_>, _>>()?;
        let limit_arrays: Vec<&Float64Array> = limit_arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        self.key_ids(rows)?;
        let keys = std::mem::take(&mut self.ids);

        // Each key's rows in (time, arrival) order: one sort of packed (key, time, row)
        // numbers, which also visits the detectors in id order. Times are offset so that they
        // compare as unsigned.
        let mut order: Vec<u128> = (0..n)
            .map(|i| {
                let time = (times[i] as u64) ^ (1 << 63);
                (u128::from(keys[i]) << 96) | (u128::from(time) << 32) | i as u128
            })
            .collect();
        order.sort_unstable();

        let mut scores = vec![None; n];
        let mut flags = vec![false; n];
        let mut reasons: Vec<Option<String>> = vec![None; n];
        let mut limits = vec![None; limit_arrays.len()];
        let mut touched = None;
        for &packed in &order {
            let i = (packed & 0xffff_ffff) as usize;
            let (key, time) = (keys[i], times[i]);
            if touched != Some(key) {
                if let Some(done) = touched {
                    self.remeasure(done);
                }
                touched = Some(key);
            }
            self.keys.touch(key, time);
            if let Some(gap) = gap_ms {
                let slot = &mut self.deadline_of[key as usize];
                if let Some(deadline) = slot.take() {
                    self.deadlines.remove(&(deadline, key));
                    if time > deadline {
                        gaps.push((key, deadline - gap, deadline));
                    }
                }
                let deadline = time.saturating_add(gap);
                *slot = Some(deadline);
                self.deadlines.insert((deadline, key));
            }
            let value = values.is_valid(i).then(|| values.value(i));
            let Some(value) = value.filter(|v| !v.is_nan()) else {
                flushed.missing_value += 1;
                continue;
            };
            for (slot, array) in limits.iter_mut().zip(&limit_arrays) {
                *slot = array.is_valid(i).then(|| array.value(i));
            }
            let mut verdict =
                self.detectors[key as usize].observe(&plan.spec, plan.warmup, time, value, &limits);
            if let Some(cooldown) = plan.cooldown_ms {
                let quiet = &mut self.quiet_until[key as usize];
                if time < *quiet {
                    verdict.score = verdict.score.min(COOLDOWN_SCORE);
                    verdict.anomaly = false;
                    verdict.reason = None;
                } else if verdict.anomaly {
                    *quiet = time.saturating_add(cooldown);
                }
            }
            scores[i] = Some(verdict.score);
            flags[i] = verdict.anomaly;
            reasons[i] = verdict.reason;
        }
        if let Some(done) = touched {
            self.remeasure(done);
        }
        self.ids = keys;
        if gap_ms.is_some() {
            // The judged rows come first; silences found among them are emitted after them.
            gaps.sort_unstable_by_key(|&(key, _, deadline)| (deadline, key));
        }

        let mut columns = rows.columns().to_vec();
        columns.push(std::sync::Arc::new(Float64Array::from(scores)));
        columns.push(std::sync::Arc::new(BooleanArray::from(flags)));
        columns.push(std::sync::Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(plan.spec.name(), n),
        )));
        let mut reason = StringBuilder::with_capacity(n, 0);
        for text in &reasons {
            reason.append_option(text.as_deref());
        }
        columns.push(std::sync::Arc::new(reason.finish()));
        RecordBatch::try_new(plan.output_schema.clone(), columns)
    }

    /// Updates the state size of key `key` after it changed.
    fn remeasure(&mut self, key: u32) {
        let bytes = self.detectors[key as usize].state_bytes() + self.plan.key_overhead;
        let old = std::mem::replace(&mut self.key_bytes[key as usize], bytes);
        self.state_bytes = self.state_bytes + bytes - old;
    }

    /// One row per silence `(key, last row's time, deadline)`.
    fn gap_rows(&self, gaps: &[(u32, i64, i64)]) -> Result<RecordBatch, ArrowError> {
        let plan = &self.plan;
        let n = gaps.len();
        let key_columns = self
            .keys
            .columns(gaps.iter().filter_map(|&(k, _, _)| self.keys.row(k)))?;
        let mut columns = Vec::with_capacity(plan.output_schema.fields().len());
        for (index, field) in plan.input_schema.fields().iter().enumerate() {
            let column: ArrayRef = if index == plan.event_time {
                let timezone = match field.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(gaps.iter().map(|g| g.2))
                        .with_timezone_opt(timezone),
                )
            } else if let Some(at) = self.keys.key_columns().iter().position(|&k| k == index) {
                key_columns[at].clone()
            } else {
                new_null_array(field.data_type(), n)
            };
            columns.push(column);
        }
        let mut score = Float64Builder::with_capacity(n);
        let mut flag = BooleanBuilder::with_capacity(n);
        let mut method = StringBuilder::new();
        let mut reason = StringBuilder::new();
        let gap = plan.spec.gap_ms().unwrap_or(0);
        for &(_, last, _) in gaps {
            score.append_value(1.0);
            flag.append_value(true);
            method.append_value("gap");
            reason.append_value(format!(
                "no data for {} after the row at {}",
                super::statistical::humanize_ms(gap),
                edgeflow_engine::time::format_event_time(last.max(0) as u64)
            ));
        }
        columns.push(Arc::new(score.finish()));
        columns.push(Arc::new(flag.finish()));
        columns.push(Arc::new(method.finish()));
        columns.push(Arc::new(reason.finish()));
        RecordBatch::try_new(plan.output_schema.clone(), columns)
    }
}
