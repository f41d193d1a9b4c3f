//! [`WindowAggregator`]: one worker's tumbling or hopping windows, fed batch by batch and
//! emitted when the operator around it says so. It knows nothing of timely; the operator holds
//! the capabilities and decides when the frontier (or the clock) has reached a window's
//! firing time.
//!
//! Per batch, the work is column-at-a-time: one pass over the event times sorts rows into
//! on-time, late and missing, and finds the windows they fall in (usually the same set for the
//! whole batch, so no per-row window arithmetic at all); key columns are prepared once (cast or
//! row-encoded), rows are mapped to group ids per window, and then each aggregate runs one
//! tight loop over its column. State is one entry per open window and key, whatever the number
//! of rows.
//!
//! A window goes through up to three kinds of emission ([`Emission`]): early firings
//! (provisional rows of the keys that changed), the final emission when the watermark passes
//! its end (every key), and, while `allowed_lateness` keeps it, revisions (the keys that late
//! rows changed). Each emission of a window carries the next revision number.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::buffer::ScalarBuffer;
use edgeflow_engine::arrow::compute::{filter, filter_record_batch};
use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::UTC;

use super::Selection;
use super::accumulate::{Accumulator, Values};
use super::config::WindowPlan;
use super::keys::{BatchKeys, KeyEncoder, KeyTable};
use super::kind::Alignment;

/// The state of one window.
struct OpenWindow {
    /// End (exclusive).
    end: i64,
    keys: KeyTable,
    accumulators: Vec<Accumulator>,
    /// Emissions so far: the revision number of the next one.
    emissions: i64,
    /// Whether the final emission happened (the window is then only kept for late rows).
    ended: bool,
    /// Per group, whether it changed since the last emission (tracked only with revisions).
    dirty: Vec<bool>,
    /// Whether some group is dirty.
    changed: bool,
}

/// Which emission of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Emission {
    /// An early firing: provisional rows of the groups that changed since the last emission.
    Early,
    /// The watermark passed the window's end: every group (and, with `emit_empty`, every
    /// known key).
    Final,
    /// Late rows changed an ended window: the groups they changed.
    Revision,
}

/// What [`WindowAggregator::absorb`] did with one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Absorbed {
    /// Rows added to windows.
    pub on_time: usize,
    /// Rows whose windows have all been dropped (ended more than the allowed lateness ago).
    pub late: usize,
    /// Rows with a null event time: dropped.
    pub missing_time: usize,
}

/// One worker's windows.
pub(crate) struct WindowAggregator {
    plan: Arc<WindowPlan>,
    alignment: Alignment,
    encoder: KeyEncoder,
    windows: OpenWindows,
    /// Scratch: the on-time rows of a batch (reused across batches).
    selected: Vec<u32>,
    /// Per aggregate, the values of its expression that the last batch made null with a
    /// runtime error (0 for aggregates that read a column).
    expression_errors: Vec<usize>,
    /// Whether some aggregate reads an expression.
    has_expressions: bool,
    /// With `emit_empty`: every key seen in an emitted window.
    known: Option<KeyTable>,
    /// Windows ending at or before this were closed early to keep state under `max_keys`:
    /// their rows are late from then on, whatever the watermark.
    closed_through: i64,
}

/// The windows by start, and their total number of groups.
struct OpenWindows {
    open: BTreeMap<i64, OpenWindow>,
    /// Groups over every window (the state size).
    groups: usize,
    /// Groups of the last window emitted in full: the expected size of the next one.
    typical: usize,
    /// Scratch: the group id of each selected row (reused across batches).
    gids: Vec<u32>,
}

/// One batch's inputs, prepared once for every window the batch touches.
struct Prepared {
    keys: BatchKeys,
    values: Vec<Values>,
    /// The event time of every row (ms); null times are never selected.
    times: ScalarBuffer<i64>,
    /// Hopping windows: each row's key as a batch-local id, looked up once for all the
    /// windows the row goes to (each window then maps only the batch's distinct keys).
    local: Option<LocalKeys>,
}

/// Batch-local key ids: `ids[row]` for every row, `0..count`.
struct LocalKeys {
    ids: Vec<u32>,
    count: usize,
}

/// Rows with an event time below this are late at `watermark`: their earliest window ended
/// `lateness` or more before it, so it may have been dropped.
pub(crate) fn late_threshold(alignment: &Alignment, watermark: u64, lateness: i64) -> i64 {
    let watermark = i64::try_from(watermark).unwrap_or(i64::MAX);
    alignment.on_time_from(watermark.saturating_sub(lateness))
}

impl WindowAggregator {
    /// An aggregator with no open window.
    pub(crate) fn new(plan: Arc<WindowPlan>) -> Result<Self, ArrowError> {
        let encoder = KeyEncoder::new(plan.keys.clone(), plan.key_fields.clone())?;
        Ok(Self {
            alignment: plan.alignment().clone(),
            known: plan.emit_empty.then(|| encoder.table()),
            encoder,
            windows: OpenWindows {
                open: BTreeMap::new(),
                groups: 0,
                typical: 0,
                gids: Vec::new(),
            },
            selected: Vec::new(),
            expression_errors: vec![0; plan.aggregates.len()],
            has_expressions: plan.aggregates.iter().any(|a| a.expression.is_some()),
            closed_through: i64::MIN,
            plan,
        })
    }

    /// Per aggregate (in plan order), the expression values of the last absorbed batch that
    /// are null because of a runtime error. Only on-time rows are evaluated.
    pub(crate) fn expression_errors(&self) -> &[usize] {
        &self.expression_errors
    }

    /// Groups held over every window.
    pub(crate) fn groups(&self) -> usize {
        self.windows.groups
    }

    /// The threshold of late rows for a batch with watermark `watermark` (see
    /// [`late_threshold`]), raised past windows closed early.
    pub(crate) fn threshold(&self, watermark: u64) -> i64 {
        let threshold = late_threshold(&self.alignment, watermark, self.plan.allowed_lateness_ms);
        if self.closed_through == i64::MIN {
            threshold
        } else {
            threshold.max(self.alignment.on_time_from(self.closed_through))
        }
    }

    /// Start and end of every window that has not had its final emission, by start.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.windows
            .open
            .iter()
            .filter(|(_, w)| !w.ended)
            .map(|(&start, w)| (start, w.end))
    }

    /// Starts of the ended windows that late rows changed since their last emission.
    pub(crate) fn revised(&self) -> Vec<i64> {
        self.windows
            .open
            .iter()
            .filter(|(_, w)| w.ended && w.changed)
            .map(|(&start, _)| start)
            .collect()
    }

    /// Whether a window starting at `start` is held.
    pub(crate) fn holds(&self, start: i64) -> bool {
        self.windows.open.contains_key(&start)
    }

    /// Whether `emit_empty` has keys to emit for silent windows.
    pub(crate) fn knows_keys(&self) -> bool {
        self.known.as_ref().is_some_and(|known| known.len() > 0)
    }

    /// The start of the window after the one starting at `start`.
    pub(crate) fn next_start(&self, start: i64) -> i64 {
        self.alignment.next_start(start)
    }

    /// Opens an empty window at `start` (for `emit_empty`); returns its end.
    pub(crate) fn open_empty(&mut self, start: i64) -> i64 {
        let end = self.alignment.end(start);
        let (encoder, plan) = (&self.encoder, &self.plan);
        self.windows
            .open
            .entry(start)
            .or_insert_with(|| OpenWindow::new(plan, encoder, end, 0));
        end
    }

    /// Adds a batch that arrived with watermark `watermark`; calls `opened(start, end)` for
    /// each window it opens (before the first row goes in). With `now` (processing time),
    /// every row belongs to the windows of `now` instead of its event time.
    ///
    /// A row is late, and dropped, when its earliest window ended `allowed_lateness` or more
    /// before the watermark (it then goes to none of its windows, so no row is half counted).
    /// Every other row's windows are open, or ended but kept for late rows (which then marks
    /// the groups it changes for a revision).
    pub(crate) fn absorb(
        &mut self,
        rows: &RecordBatch,
        watermark: u64,
        now: Option<i64>,
        mut opened: impl FnMut(i64, i64),
    ) -> Result<Absorbed, ArrowError> {
        self.expression_errors.fill(0);
        if rows.num_rows() == 0 {
            return Ok(Absorbed::default());
        }
        let wall_clock;
        let (raw, nulls, threshold) = match now {
            Some(now) => {
                wall_clock = ScalarBuffer::from(vec![now; rows.num_rows()]);
                (&wall_clock, None, i64::MIN)
            }
            None => {
                let times: &TimestampMillisecondArray = rows
                    .column(self.plan.event_time)
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .ok_or_else(|| {
                        ArrowError::SchemaError("event-time column is not a ms timestamp".into())
                    })?;
                let nulls = times.nulls().filter(|n| n.null_count() > 0).cloned();
                (times.values(), nulls, self.threshold(watermark))
            }
        };
        let nulls = nulls.as_ref();

        let mut absorbed = Absorbed::default();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for (row, &time) in raw.iter().enumerate() {
            if nulls.is_some_and(|n| n.is_null(row)) {
                absorbed.missing_time += 1;
            } else if time < threshold {
                absorbed.late += 1;
            } else {
                min = min.min(time);
                max = max.max(time);
            }
        }
        absorbed.on_time = rows.num_rows() - absorbed.late - absorbed.missing_time;
        if absorbed.on_time == 0 {
            return Ok(absorbed);
        }

        // Expressions are evaluated on on-time rows only, so that late rows and rows without
        // an event time never count as expression errors. Batches with such rows are rare,
        // and plans without expressions keep working on the batch as it is.
        let on_time_rows;
        let on_time_times;
        let (rows, raw, nulls) = if self.has_expressions && absorbed.on_time < rows.num_rows() {
            let mask: BooleanArray = raw
                .iter()
                .enumerate()
                .map(|(row, &time)| {
                    Some(nulls.is_none_or(|n| n.is_valid(row)) && time >= threshold)
                })
                .collect();
            on_time_rows = filter_record_batch(rows, &mask)?;
            on_time_times = raw
                .iter()
                .zip(mask.values())
                .filter_map(|(&time, keep)| keep.then_some(time))
                .collect::<ScalarBuffer<i64>>();
            (&on_time_rows, &on_time_times, None)
        } else {
            (rows, raw, nulls)
        };

        let mut values = Vec::with_capacity(self.plan.aggregates.len());
        for (spec, errors) in self.plan.aggregates.iter().zip(&mut self.expression_errors) {
            let prepared = match &spec.expression {
                Some(expression) => {
                    let evaluated = expression.evaluate(rows)?;
                    *errors = evaluated.errors;
                    Values::prepare(spec, Some(&evaluated.values))?
                }
                None => Values::prepare(spec, spec.column.map(|c| rows.column(c)))?,
            };
            values.push(prepared);
        }
        let keys = self.encoder.prepare(rows)?;
        let local = (self.alignment.slide_ms < self.alignment.size_ms).then(|| {
            let mut table = self.encoder.table_with_capacity(self.windows.typical);
            let mut ids = Vec::new();
            table.assign(&keys, Selection::All(rows.num_rows()), &mut ids);
            LocalKeys {
                ids,
                count: table.len(),
            }
        });
        let prepared = Prepared {
            keys,
            values,
            times: raw.clone(),
            local,
        };

        let alignment = &self.alignment;
        let first = alignment.latest_start(min);
        if first == alignment.latest_start(max) {
            // The common case: every on-time row falls in the same windows.
            let selection = if absorbed.on_time == rows.num_rows() {
                Selection::All(rows.num_rows())
            } else {
                self.selected.clear();
                self.selected.extend((0..raw.len() as u32).filter(|&row| {
                    nulls.is_none_or(|n| n.is_valid(row as usize)) && raw[row as usize] >= threshold
                }));
                Selection::Rows(&self.selected)
            };
            alignment.for_each_window(min, |start| {
                self.windows.add(
                    &self.plan,
                    &self.encoder,
                    (start, alignment.end(start)),
                    selection,
                    &prepared,
                    &mut opened,
                );
            });
        } else {
            // Rows span several windows: bucket them by the latest window they fall in,
            // keeping their order (so sums add up in arrival order however the rows were split
            // across workers); each bucket then goes to every window of its rows.
            let mut buckets: Vec<Vec<u32>> = Vec::new();
            let mut index: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
            let mut current = (i64::MIN, 0usize);
            for (row, &time) in raw.iter().enumerate() {
                if nulls.is_some_and(|n| n.is_null(row)) || time < threshold {
                    continue;
                }
                let start = alignment.latest_start(time);
                if start != current.0 {
                    // Switching windows is rare within a batch: look the bucket up only then.
                    let bucket = index
                        .entry(start)
                        .or_insert_with(|| {
                            buckets.push(Vec::new());
                            (buckets.len() - 1, time)
                        })
                        .0;
                    current = (start, bucket);
                }
                buckets[current.1].push(row as u32);
            }
            for (bucket, time) in index.into_values() {
                alignment.for_each_window(time, |start| {
                    self.windows.add(
                        &self.plan,
                        &self.encoder,
                        (start, alignment.end(start)),
                        Selection::Rows(&buckets[bucket]),
                        &prepared,
                        &mut opened,
                    );
                });
            }
        }
        Ok(absorbed)
    }

    /// Emits the window starting at `start`: its rows sorted by key, or `None` when it has no
    /// row to emit (or is not held). A final emission without allowed lateness drops the
    /// window; with it, the window is kept (for revisions) until [`Self::expire`].
    pub(crate) fn emit(
        &mut self,
        start: i64,
        emission: Emission,
    ) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(window) = self.windows.open.get_mut(&start) else {
            return Ok(None);
        };
        if emission == Emission::Final
            && let Some(known) = &mut self.known
        {
            let added = window.keys.add_keys_of(known);
            if added > 0 {
                window.grow(&self.plan);
                self.windows.groups += added;
            }
            known.add_keys_of(&window.keys);
        }
        let (mut key_columns, mut order) = self.encoder.sorted(&window.keys)?;
        if emission != Emission::Final {
            let mask: BooleanArray = order
                .iter()
                .map(|&g| Some(window.dirty[g as usize]))
                .collect();
            order.retain(|&g| window.dirty[g as usize]);
            key_columns = key_columns
                .iter()
                .map(|column| filter(column, &mask))
                .collect::<Result<_, _>>()?;
        }
        let batch = if order.is_empty() {
            None
        } else {
            let n = order.len();
            let bound = |time: i64| -> ArrayRef {
                Arc::new(TimestampMillisecondArray::from(vec![time; n]).with_timezone(UTC))
            };
            let mut columns = vec![bound(start), bound(window.end)];
            columns.extend(key_columns);
            for (accumulator, spec) in window.accumulators.iter().zip(&self.plan.aggregates) {
                columns.push(accumulator.finish(spec, &order)?);
            }
            if self.plan.revisions {
                columns.push(Arc::new(Int64Array::from(vec![window.emissions; n])));
                columns.push(Arc::new(BooleanArray::from(vec![
                    emission
                        == Emission::Early;
                    n
                ])));
            }
            window.emissions += 1;
            Some(RecordBatch::try_new(
                self.plan.output_schema.clone(),
                columns,
            )?)
        };
        window.dirty.fill(false);
        window.changed = false;
        if emission == Emission::Final {
            // Capped, so that one window with a burst of keys does not size every later one.
            self.windows.typical = window.keys.len().min(self.plan.max_keys).min(1 << 16);
            window.ended = true;
            if self.plan.allowed_lateness_ms == 0 {
                self.drop_window(start);
            }
        }
        Ok(batch)
    }

    /// Drops the ended windows whose allowed lateness is over at watermark `bound`.
    pub(crate) fn expire(&mut self, bound: Option<u64>) {
        let lateness = self.plan.allowed_lateness_ms;
        let expired: Vec<i64> = self
            .windows
            .open
            .iter()
            .filter(|(_, w)| {
                w.ended
                    && bound.is_none_or(|b| {
                        w.end.saturating_add(lateness) <= i64::try_from(b).unwrap_or(i64::MAX)
                    })
            })
            .map(|(&start, _)| start)
            .collect();
        for start in expired {
            self.drop_window(start);
        }
    }

    /// Estimated bytes of the state held: per group, its key in the key table and each
    /// aggregate's slots, plus what aggregates hold beyond their slots (sketches, samples).
    pub(crate) fn state_bytes(&self) -> usize {
        const PER_KEY: usize = 64;
        const PER_AGGREGATE: usize = 16;
        let known = self.known.as_ref().map_or(0, KeyTable::len) * PER_KEY;
        let heap: usize = self
            .windows
            .open
            .values()
            .flat_map(|w| &w.accumulators)
            .map(Accumulator::heap_bytes)
            .sum();
        self.windows.groups * (PER_KEY + PER_AGGREGATE * self.plan.aggregates.len()) + known + heap
    }

    /// To bring the state back under `max_keys` (or, with `over_budget`, to shed state for
    /// the pipeline's memory limit): drops the oldest ended window, or, when every window is
    /// pending, marks the oldest one closed early and returns its start so that the operator
    /// emits it (its later rows count as late). `None` when there is nothing to do.
    pub(crate) fn shed(&mut self, over_budget: bool) -> Option<Shed> {
        if self.windows.groups <= self.plan.max_keys && !over_budget {
            return None;
        }
        if let Some((&start, _)) = self.windows.open.iter().find(|(_, w)| w.ended) {
            self.drop_window(start);
            return Some(Shed::Dropped(start));
        }
        let (&start, window) = self.windows.open.iter().next()?;
        self.closed_through = self.closed_through.max(window.end);
        Some(Shed::CloseEarly(start))
    }

    /// With `emit_empty`, keeps the known keys under `max_keys`: when they pass it, only the
    /// keys of the window just emitted stay known. Returns how many keys were forgotten.
    pub(crate) fn forget_idle_keys(&mut self, start: i64) -> usize {
        let (Some(known), Some(window)) = (&mut self.known, self.windows.open.get(&start)) else {
            return 0;
        };
        if known.len() <= self.plan.max_keys {
            return 0;
        }
        let before = known.len();
        let mut fresh = self.encoder.table();
        fresh.add_keys_of(&window.keys);
        *known = fresh;
        before - known.len()
    }

    fn drop_window(&mut self, start: i64) {
        if let Some(window) = self.windows.open.remove(&start) {
            self.windows.groups -= window.keys.len();
        }
    }
}

/// What [`WindowAggregator::shed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shed {
    /// Dropped the ended window starting here (its lateness cut short).
    Dropped(i64),
    /// The pending window starting here must be emitted now.
    CloseEarly(i64),
}

impl OpenWindow {
    fn new(plan: &WindowPlan, encoder: &KeyEncoder, end: i64, capacity: usize) -> Self {
        OpenWindow {
            end,
            keys: encoder.table_with_capacity(capacity),
            accumulators: plan.aggregates.iter().map(Accumulator::new).collect(),
            emissions: 0,
            ended: false,
            dirty: Vec::new(),
            changed: false,
        }
    }

    /// Makes room in the accumulators for every group of the key table.
    fn grow(&mut self, plan: &WindowPlan) {
        let groups = self.keys.len();
        for (accumulator, spec) in self.accumulators.iter_mut().zip(&plan.aggregates) {
            accumulator.grow(spec, groups);
        }
        if plan.revisions {
            self.dirty.resize(groups, false);
        }
    }
}

impl OpenWindows {
    /// Adds the selected rows of a batch to the window `(start, end)`, opening it first if
    /// needed.
    fn add(
        &mut self,
        plan: &WindowPlan,
        encoder: &KeyEncoder,
        (start, end): (i64, i64),
        rows: Selection<'_>,
        prepared: &Prepared,
        opened: &mut impl FnMut(i64, i64),
    ) {
        let typical = self.typical;
        let window = self.open.entry(start).or_insert_with(|| {
            opened(start, end);
            OpenWindow::new(plan, encoder, end, typical)
        });
        let before = window.keys.len();
        match &prepared.local {
            None => window.keys.assign(&prepared.keys, rows, &mut self.gids),
            Some(local) => {
                // Map the batch-local ids of the selected rows to this window's groups,
                // looking each distinct key up once.
                let mut to_group = vec![u32::MAX; local.count];
                let mut firsts = Vec::new();
                rows.for_each(|_, row| {
                    let id = local.ids[row] as usize;
                    if to_group[id] == u32::MAX {
                        to_group[id] = firsts.len() as u32;
                        firsts.push(row as u32);
                    }
                });
                window
                    .keys
                    .assign(&prepared.keys, Selection::Rows(&firsts), &mut self.gids);
                for (k, &row) in firsts.iter().enumerate() {
                    to_group[local.ids[row as usize] as usize] = self.gids[k];
                }
                self.gids.clear();
                rows.for_each(|_, row| self.gids.push(to_group[local.ids[row] as usize]));
            }
        }
        let after = window.keys.len();
        if after > before {
            self.groups += after - before;
            window.grow(plan);
        }
        for ((accumulator, spec), values) in window
            .accumulators
            .iter_mut()
            .zip(&plan.aggregates)
            .zip(&prepared.values)
        {
            accumulator.update(spec, values, &prepared.times, rows, &self.gids);
        }
        if plan.revisions {
            for &g in &self.gids {
                window.dirty[g as usize] = true;
            }
            window.changed = true;
        }
    }
}

#[cfg(test)]
#[path = "aggregator_tests.rs"]
mod tests;
