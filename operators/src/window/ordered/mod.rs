//! [`OrderedWindows`]: one worker's state for the data-dependent window kinds (session,
//! sliding and count windows), which need each key's rows in event-time order. It knows
//! nothing of timely; [`super::ordered_operator`] holds the capability and tells it when the
//! watermark moves.
//!
//! # How rows flow
//!
//! 1. [`OrderedWindows::absorb`] splits a batch into rows without event time (counted as
//!    missing), late rows (event time below the batch's watermark: returned for the `late`
//!    side output) and on-time rows, which are buffered as they came.
//! 2. [`OrderedWindows::advance`] (the watermark reached `w`) takes the buffered rows with time
//!    below `w`, which no later row can precede any more, evaluates the aggregates' arguments
//!    on them once, maps them to key ids with a [`KeyTable`] that lives as long as the worker,
//!    and sorts them by (key id, time), keeping arrival order among equal times. Each key's
//!    rows are then a contiguous run, fed in order to that key's state machine.
//! 3. Closed windows are finished a whole flush at a time and returned sorted by
//!    (`window_start`, key), so the output does not depend on how many workers ran.
//!
//! Memory grows with keys and with the rows inside the watermark lag, never with the total
//! number of events; sliding windows also keep each key's rows of the last `size`.
//!
//! # The kinds
//!
//! * **session** (`gap`, optional `max_length`): a row joins its key's open session when it
//!   comes less than `gap` after the session's last row and, with `max_length`, less than
//!   `max_length` after its first; otherwise the session closes and the row opens a new one.
//!   A session also closes once the watermark reaches its end, when no row can join it any
//!   more. `window_start` is the first row's time and `window_end` the last row's time plus
//!   `gap` (Flink's convention: the time the session timed out), or `window_start +
//!   max_length` when that comes first.
//! * **sliding** (`size`): one output row per input row at time `t`, aggregating the key's rows
//!   in `(t - size, t]` (eKuiper's sliding window); rows at the same time as `t` that arrived
//!   later are included, so duplicates give identical output rows.
//! * **count** (`count = N`): each key's rows, in event-time order, are cut into windows of
//!   `N`; `window_start` and `window_end` are the first and last row's times (both included).
//!   At the end of input, each key's incomplete window is emitted with fewer rows, so nothing
//!   disappears silently.
//!
//! Sessions and count windows hold one accumulator *slot* per open window (slots closed in a
//! flush are finished together, then reset and reused); sliding windows use fresh slots, one
//! per output row, each updated with the row range of its window.

use std::collections::BTreeSet;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use edgeflow_engine::arrow::compute::{concat, concat_batches, filter, filter_record_batch, not};
use edgeflow_engine::arrow::error::ArrowError;

use self::output::KeyValues;
use super::Selection;
use super::accumulate::{Accumulator, Values};
use super::config::WindowPlan;
use super::keys::{KeyEncoder, KeyTable};
use super::kind::WindowKind;

mod output;

pub(crate) use crate::reorder::Absorbed;
use crate::reorder::{Buffered, event_times, split_on_watermark, to_time};

/// One worker's session, sliding or count windows.
pub(crate) struct OrderedWindows {
    plan: Arc<WindowPlan>,
    encoder: KeyEncoder,
    /// Key → key id, for as long as the worker runs.
    keys: KeyTable,
    /// Key id → the key's values, for the output.
    key_values: KeyValues,
    /// On-time rows the watermark has not passed yet, in arrival order.
    pending: Vec<Buffered>,
    pending_rows: usize,
    state: KindState,
    /// Per aggregate, the values of its expression that the last flush made null with a
    /// runtime error.
    expression_errors: Vec<usize>,
}

/// The rows of one flush, ready for the state machines.
struct Prepared {
    /// Event time of each row.
    times: Vec<i64>,
    /// Key id of each row.
    keys: Vec<u32>,
    /// Per aggregate, its argument (a column or an evaluated expression; `None` for `count()`).
    args: Vec<Option<ArrayRef>>,
}

enum KindState {
    Session {
        gap: i64,
        max_length: Option<i64>,
        open: OpenWindows,
        /// Open sessions by the time they end: `(end, key id)`.
        ending: BTreeSet<(i64, u32)>,
    },
    Count {
        events: u64,
        open: OpenWindows,
    },
    Sliding {
        size: i64,
        /// Rows that windows of rows still to come may include (time > watermark - size).
        history: Option<Prepared>,
    },
}

/// A window still open: its accumulator slot, first and last row times and row count.
#[derive(Clone, Copy, Debug)]
struct Open {
    slot: u32,
    start: i64,
    last: i64,
    events: u64,
}

/// Open windows by key id, and their accumulator slots.
struct OpenWindows {
    by_key: Vec<Option<Open>>,
    count: usize,
    accumulators: Vec<Accumulator>,
    slots: usize,
    free: Vec<u32>,
}

/// A closed window, waiting to be finished.
struct Closed {
    start: i64,
    end: i64,
    key: u32,
    slot: u32,
}

impl OrderedWindows {
    /// Empty state for `plan`, whose kind must be session, sliding or count.
    pub(crate) fn new(plan: Arc<WindowPlan>) -> Result<Self, ArrowError> {
        let encoder = KeyEncoder::new(plan.keys.clone(), plan.key_fields.clone())?;
        let state = match plan.kind {
            WindowKind::Session {
                gap_ms,
                max_length_ms,
            } => KindState::Session {
                gap: gap_ms,
                max_length: max_length_ms,
                open: OpenWindows::new(&plan),
                ending: BTreeSet::new(),
            },
            WindowKind::Count { events } => KindState::Count {
                events,
                open: OpenWindows::new(&plan),
            },
            WindowKind::Sliding { size_ms } => KindState::Sliding {
                size: size_ms,
                history: None,
            },
            WindowKind::Aligned(_) => {
                return Err(ArrowError::InvalidArgumentError(
                    "aligned windows do not need event-time order".into(),
                ));
            }
        };
        Ok(Self {
            keys: encoder.table(),
            key_values: KeyValues::new(plan.keys.len()),
            encoder,
            pending: Vec::new(),
            pending_rows: 0,
            state,
            expression_errors: vec![0; plan.aggregates.len()],
            plan,
        })
    }

    /// Per aggregate (in plan order), the expression values of the last flush that are null
    /// because of a runtime error. Each on-time row is evaluated once, when the watermark
    /// passes it.
    pub(crate) fn expression_errors(&self) -> &[usize] {
        &self.expression_errors
    }

    /// Rows and windows held: buffered rows, open windows and (sliding) retained rows.
    pub(crate) fn state_rows(&self) -> usize {
        self.pending_rows
            + match &self.state {
                KindState::Session { open, .. } | KindState::Count { open, .. } => open.count,
                KindState::Sliding { history, .. } => history.as_ref().map_or(0, |h| h.times.len()),
            }
    }

    /// An estimate of the bytes held: buffered and retained rows, keys, open windows.
    pub(crate) fn state_bytes(&self) -> usize {
        const PER_KEY: usize = 64;
        const PER_AGGREGATE: usize = 16;
        let buffered: usize = self
            .pending
            .iter()
            .map(|b| b.rows.get_array_memory_size())
            .sum();
        let keys = self.keys.len() * PER_KEY + self.key_values.bytes();
        let windows = match &self.state {
            KindState::Session { open, .. } | KindState::Count { open, .. } => {
                open.slots * PER_AGGREGATE * self.plan.aggregates.len()
                    + open.by_key.len() * std::mem::size_of::<Option<Open>>()
                    + open
                        .accumulators
                        .iter()
                        .map(Accumulator::heap_bytes)
                        .sum::<usize>()
            }
            KindState::Sliding { history, .. } => history.as_ref().map_or(0, |h| {
                h.times.len() * 12
                    + h.args
                        .iter()
                        .flatten()
                        .map(|a| a.get_array_memory_size())
                        .sum::<usize>()
            }),
        };
        buffered + keys + windows
    }

    /// Whether some output is still to come without any further input: buffered rows or open
    /// windows. (Rows a sliding window retains only matter to rows still to come.)
    pub(crate) fn needs_capability(&self) -> bool {
        self.pending_rows > 0
            || matches!(&self.state,
                KindState::Session { open, .. } | KindState::Count { open, .. } if open.count > 0)
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

    /// The watermark reached `watermark` (`None`: the input ended). Feeds the buffered rows
    /// below it to the windows and returns the windows that closed, sorted by
    /// (`window_start`, key); at the end of input every window closes.
    pub(crate) fn advance(
        &mut self,
        watermark: Option<u64>,
    ) -> Result<Option<RecordBatch>, ArrowError> {
        self.expression_errors.fill(0);
        let bound = watermark.map(to_time);
        let output = self.feed(bound)?;
        if bound.is_none() {
            // Nothing can come after the end of input: forget the keys too.
            self.keys = self.encoder.table();
            self.key_values = KeyValues::new(self.plan.keys.len());
            if let KindState::Session { open, .. } | KindState::Count { open, .. } = &mut self.state
            {
                *open = OpenWindows::new(&self.plan);
            }
        }
        Ok(output)
    }

    /// Feeds the buffered rows below `bound` (all with `None`) to the windows; returns the
    /// windows that closed.
    fn feed(&mut self, bound: Option<i64>) -> Result<Option<RecordBatch>, ArrowError> {
        let ready = self.take_ready(bound)?;
        let prepared = match &ready {
            Some(rows) => Some(self.prepare(rows)?),
            None => None,
        };
        let keys = self.keys.len();
        let plan = self.plan.clone();
        match &mut self.state {
            KindState::Session {
                gap,
                max_length,
                open,
                ending,
            } => {
                let (gap, max_length) = (*gap, *max_length);
                let end_of = |window: &Open| {
                    let end = window.last.saturating_add(gap);
                    max_length.map_or(end, |max| end.min(window.start.saturating_add(max)))
                };
                let mut closed = Vec::new();
                if let Some(prepared) = &prepared {
                    open.by_key.resize(keys, None);
                    let order = order(prepared);
                    let mut slots = Vec::with_capacity(order.len());
                    for run in runs(prepared, &order) {
                        let key = prepared.keys[order[run.start] as usize];
                        let mut current = open.by_key[key as usize].take();
                        if let Some(window) = &current {
                            ending.remove(&(end_of(window), key));
                        }
                        for &row in &order[run] {
                            let time = prepared.times[row as usize];
                            match &mut current {
                                Some(window) if time < end_of(window) => window.last = time,
                                _ => {
                                    if let Some(window) = current.take() {
                                        closed.push(open.close(window, end_of(&window), key));
                                    }
                                    current = Some(open.start(&plan, time));
                                }
                            }
                            slots.push(current.as_ref().map_or(0, |w| w.slot));
                        }
                        if let Some(window) = current {
                            ending.insert((end_of(&window), key));
                            open.by_key[key as usize] = Some(window);
                        }
                    }
                    open.update(&plan, prepared, &order, &slots)?;
                }
                // A session ending at or before the watermark can take no more rows.
                while let Some(&(end, key)) = ending.first() {
                    if bound.is_some_and(|bound| end > bound) {
                        break;
                    }
                    ending.pop_first();
                    let window = open.by_key[key as usize]
                        .take()
                        .expect("every ending session is open");
                    closed.push(open.close(window, end, key));
                }
                let output = self.key_values.output(&plan, &closed, &open.accumulators)?;
                open.release(&plan, &closed);
                Ok(output)
            }
            KindState::Count { events, open } => {
                let events = *events;
                let mut closed = Vec::new();
                if let Some(prepared) = &prepared {
                    open.by_key.resize(keys, None);
                    let order = order(prepared);
                    let mut slots = Vec::with_capacity(order.len());
                    for run in runs(prepared, &order) {
                        let key = prepared.keys[order[run.start] as usize];
                        let mut current = open.by_key[key as usize].take();
                        for &row in &order[run] {
                            let time = prepared.times[row as usize];
                            let window = current.get_or_insert_with(|| open.start(&plan, time));
                            window.last = time;
                            window.events += 1;
                            slots.push(window.slot);
                            if window.events == events {
                                let window = current.take().expect("just filled");
                                closed.push(open.close(window, window.last, key));
                            }
                        }
                        open.by_key[key as usize] = current;
                    }
                    open.update(&plan, prepared, &order, &slots)?;
                }
                if bound.is_none() {
                    // End of input: incomplete windows are emitted with fewer rows.
                    for key in 0..open.by_key.len() {
                        if let Some(window) = open.by_key[key].take() {
                            closed.push(open.close(window, window.last, key as u32));
                        }
                    }
                }
                let output = self.key_values.output(&plan, &closed, &open.accumulators)?;
                open.release(&plan, &closed);
                Ok(output)
            }
            KindState::Sliding { size, history } => {
                let size = *size;
                let Some(fresh) = prepared else {
                    if bound.is_none() {
                        *history = None;
                    }
                    return Ok(None);
                };
                let first_new = history.as_ref().map_or(0, |h| h.times.len());
                let rows = match history.take() {
                    Some(old) => old.append(fresh)?,
                    None => fresh,
                };
                let output = sliding(&plan, &self.key_values, &rows, first_new, size)?;
                // Rows still to come have times at or above the watermark, so their windows
                // reach back no further than `watermark - size`.
                *history = match bound {
                    Some(bound) => rows.retain(|time| time > bound.saturating_sub(size))?,
                    None => None,
                };
                Ok(output)
            }
        }
    }

    /// Key ids held: every key met, until [`Self::shed_keys`] forgets idle ones.
    pub(crate) fn keys_held(&self) -> usize {
        self.keys.len()
    }

    /// Keeps at most `limit` keys: forgets the keys with no open window and no retained rows,
    /// then, if the keys with state are still over `limit`, closes the open windows whose last
    /// row is oldest (the most idle keys) until they fit, as if their time was up. Returns the
    /// rows of the windows closed early, how many were closed, and how many keys were
    /// forgotten.
    pub(crate) fn shed_keys(
        &mut self,
        limit: usize,
    ) -> Result<(Option<RecordBatch>, usize, usize), ArrowError> {
        let held = self.keys.len();
        if held <= limit {
            return Ok((None, 0, 0));
        }
        let plan = self.plan.clone();
        let mut live = vec![false; held];
        let mut output = None;
        let mut evicted = 0;
        match &mut self.state {
            KindState::Session {
                gap,
                max_length,
                open,
                ending,
            } => {
                let (gap, max_length) = (*gap, *max_length);
                let end_of = |window: &Open| {
                    let end = window.last.saturating_add(gap);
                    max_length.map_or(end, |max| end.min(window.start.saturating_add(max)))
                };
                let closed = open.evict_idle(limit, &mut live, |window, key| {
                    ending.remove(&(end_of(window), key));
                    end_of(window)
                });
                evicted = closed.len();
                output = self.key_values.output(&plan, &closed, &open.accumulators)?;
                open.release(&plan, &closed);
            }
            KindState::Count { open, .. } => {
                let closed = open.evict_idle(limit, &mut live, |window, _| window.last);
                evicted = closed.len();
                output = self.key_values.output(&plan, &closed, &open.accumulators)?;
                open.release(&plan, &closed);
            }
            KindState::Sliding { history, .. } => {
                for &key in history.iter().flat_map(|h| &h.keys) {
                    live[key as usize] = true;
                }
            }
        }
        // Renumber the keys that keep state, in id order.
        let mut next = 0u32;
        let new_ids: Vec<Option<u32>> = live
            .iter()
            .map(|&keep| {
                keep.then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let kept: Vec<u32> = (0..held as u32).filter(|&k| live[k as usize]).collect();
        self.keys.renumber(&new_ids);
        self.key_values.retain(&kept)?;
        let renumber = |key: u32| new_ids[key as usize].expect("keys with state are kept");
        match &mut self.state {
            KindState::Session { open, ending, .. } => {
                open.renumber(&kept);
                *ending = ending
                    .iter()
                    .map(|&(end, key)| (end, renumber(key)))
                    .collect();
            }
            KindState::Count { open, .. } => open.renumber(&kept),
            KindState::Sliding { history, .. } => {
                for key in history.iter_mut().flat_map(|h| &mut h.keys) {
                    *key = renumber(*key);
                }
            }
        }
        Ok((output, evicted, held - kept.len()))
    }

    /// Removes and returns the buffered rows with time below `bound` (all with `None`).
    fn take_ready(&mut self, bound: Option<i64>) -> Result<Option<RecordBatch>, ArrowError> {
        let mut ready = Vec::new();
        let mut kept = Vec::new();
        for buffered in std::mem::take(&mut self.pending) {
            match bound {
                Some(bound) if buffered.min >= bound => kept.push(buffered),
                Some(bound) if buffered.max >= bound => {
                    let times = event_times(&buffered.rows, self.plan.event_time)?;
                    let early: BooleanArray =
                        times.values().iter().map(|&t| Some(t < bound)).collect();
                    ready.push(filter_record_batch(&buffered.rows, &early)?);
                    let later = filter_record_batch(&buffered.rows, &not(&early)?)?;
                    let times = event_times(&later, self.plan.event_time)?;
                    let min = times.values().iter().copied().min().unwrap_or(bound);
                    kept.push(Buffered {
                        rows: later,
                        min,
                        max: buffered.max,
                    });
                }
                _ => ready.push(buffered.rows),
            }
        }
        self.pending = kept;
        if ready.is_empty() {
            return Ok(None);
        }
        let rows = concat_batches(&ready[0].schema(), &ready)?;
        self.pending_rows -= rows.num_rows();
        Ok(Some(rows))
    }

    /// Evaluates the aggregates' arguments on `rows` and gives every row its key id.
    fn prepare(&mut self, rows: &RecordBatch) -> Result<Prepared, ArrowError> {
        let mut args = Vec::with_capacity(self.plan.aggregates.len());
        for (spec, errors) in self.plan.aggregates.iter().zip(&mut self.expression_errors) {
            args.push(match &spec.expression {
                Some(expression) => {
                    let evaluated = expression.evaluate(rows)?;
                    *errors += evaluated.errors;
                    Some(evaluated.values)
                }
                None => spec.column.map(|c| rows.column(c).clone()),
            });
        }
        let batch_keys = self.encoder.prepare(rows)?;
        let before = self.keys.len();
        let mut keys = Vec::new();
        self.keys
            .assign(&batch_keys, Selection::All(rows.num_rows()), &mut keys);
        if self.keys.len() > before {
            self.key_values
                .add(rows, &self.plan.keys, &keys, before, self.keys.len())?;
        }
        Ok(Prepared {
            times: event_times(rows, self.plan.event_time)?.values().to_vec(),
            keys,
            args,
        })
    }
}

/// The rows of `prepared` sorted by (key id, time), equal times in arrival order.
fn order(prepared: &Prepared) -> Vec<u32> {
    let mut order: Vec<u32> = (0..prepared.times.len() as u32).collect();
    order.sort_by_key(|&row| (prepared.keys[row as usize], prepared.times[row as usize]));
    order
}

/// The ranges of `order` that hold one key each.
fn runs<'a>(
    prepared: &'a Prepared,
    order: &'a [u32],
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let key = move |k: usize| prepared.keys[order[k] as usize];
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= order.len() {
            return None;
        }
        let first = key(start);
        let end =
            start + order[start..].partition_point(|&row| prepared.keys[row as usize] == first);
        let run = start..end;
        start = end;
        Some(run)
    })
    .inspect(move |run| debug_assert!(key(run.start) == key(run.end - 1)))
}

impl Prepared {
    /// These rows followed by `other`'s.
    fn append(self, other: Prepared) -> Result<Prepared, ArrowError> {
        let mut args = Vec::with_capacity(self.args.len());
        for (a, b) in self.args.into_iter().zip(other.args) {
            args.push(match (a, b) {
                (Some(a), Some(b)) => Some(concat(&[a.as_ref(), b.as_ref()])?),
                _ => None,
            });
        }
        let mut times = self.times;
        times.extend(other.times);
        let mut keys = self.keys;
        keys.extend(other.keys);
        Ok(Prepared { times, keys, args })
    }

    /// The rows whose time passes `keep`, or `None` if there are none.
    fn retain(&self, keep: impl Fn(i64) -> bool) -> Result<Option<Prepared>, ArrowError> {
        let mask: BooleanArray = self.times.iter().map(|&t| Some(keep(t))).collect();
        if mask.true_count() == 0 {
            return Ok(None);
        }
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            args.push(arg.as_ref().map(|a| filter(a, &mask)).transpose()?);
        }
        Ok(Some(Prepared {
            times: kept(&self.times, &mask),
            keys: kept(&self.keys, &mask),
            args,
        }))
    }

    fn values(&self, plan: &WindowPlan) -> Result<Vec<Values>, ArrowError> {
        plan.aggregates
            .iter()
            .zip(&self.args)
            .map(|(spec, arg)| Values::prepare(spec, arg.as_ref()))
            .collect()
    }
}

/// The values whose `mask` bit is set.
fn kept<T: Copy>(values: &[T], mask: &BooleanArray) -> Vec<T> {
    values
        .iter()
        .zip(mask.values().iter())
        .filter(|(_, keep)| *keep)
        .map(|(v, _)| *v)
        .collect()
}

/// Sliding windows over `rows` (sorted by time within each key by [`order`]): one window per
/// row from `first_new` on, over its key's rows in `(t - size, t]`.
fn sliding(
    plan: &WindowPlan,
    key_values: &KeyValues,
    rows: &Prepared,
    first_new: usize,
    size: i64,
) -> Result<Option<RecordBatch>, ArrowError> {
    let order = order(rows);
    let times = |k: usize| rows.times[order[k] as usize];
    let mut windows = Vec::new();
    let mut ranges = Vec::new();
    for run in runs(rows, &order) {
        let key = rows.keys[order[run.start] as usize];
        let (mut lo, mut hi) = (run.start, run.start);
        for k in run.clone() {
            if (order[k] as usize) < first_new {
                continue;
            }
            let time = times(k);
            while hi < run.end && times(hi) <= time {
                hi += 1;
            }
            while times(lo) <= time.saturating_sub(size) {
                lo += 1;
            }
            windows.push(Closed {
                start: time.saturating_sub(size),
                end: time,
                key,
                slot: windows.len() as u32,
            });
            ranges.push(lo..hi);
        }
    }
    let values = rows.values(plan)?;
    let mut accumulators = Vec::with_capacity(plan.aggregates.len());
    let mut gids = Vec::new();
    for (spec, values) in plan.aggregates.iter().zip(&values) {
        let mut accumulator = Accumulator::new(spec);
        accumulator.grow(spec, windows.len());
        for (slot, range) in ranges.iter().enumerate() {
            gids.clear();
            gids.resize(range.len(), slot as u32);
            let selection = Selection::Rows(&order[range.clone()]);
            accumulator.update(spec, values, &rows.times, selection, &gids);
        }
        accumulators.push(accumulator);
    }
    key_values.output(plan, &windows, &accumulators)
}

impl OpenWindows {
    fn new(plan: &WindowPlan) -> Self {
        Self {
            by_key: Vec::new(),
            count: 0,
            accumulators: plan.aggregates.iter().map(Accumulator::new).collect(),
            slots: 0,
            free: Vec::new(),
        }
    }

    /// Marks the keys with an open window in `live`; when there are more than `limit`, closes
    /// the ones whose last row is oldest first (`end(window, key)` gives the end to report)
    /// until `limit` are left, and returns them.
    fn evict_idle(
        &mut self,
        limit: usize,
        live: &mut [bool],
        mut end: impl FnMut(&Open, u32) -> i64,
    ) -> Vec<Closed> {
        let mut open: Vec<(i64, u32)> = self
            .by_key
            .iter()
            .enumerate()
            .filter_map(|(key, window)| window.map(|w| (w.last, key as u32)))
            .collect();
        let excess = open.len().saturating_sub(limit);
        open.sort_unstable();
        let mut closed = Vec::with_capacity(excess);
        for &(_, key) in &open[..excess] {
            let window = self.by_key[key as usize].take().expect("listed as open");
            let end = end(&window, key);
            closed.push(self.close(window, end, key));
        }
        for &(_, key) in &open[excess..] {
            live[key as usize] = true;
        }
        closed
    }

    /// Keeps the open windows of key ids `kept` (ascending), which become ids `0..`.
    fn renumber(&mut self, kept: &[u32]) {
        self.by_key = kept
            .iter()
            .map(|&key| self.by_key.get(key as usize).copied().flatten())
            .collect();
    }

    /// Opens a window at `time` in a free slot.
    fn start(&mut self, plan: &WindowPlan, time: i64) -> Open {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots += 1;
            for (accumulator, spec) in self.accumulators.iter_mut().zip(&plan.aggregates) {
                accumulator.grow(spec, self.slots);
            }
            self.slots as u32 - 1
        });
        self.count += 1;
        Open {
            slot,
            start: time,
            last: time,
            events: 0,
        }
    }

    /// Closes `window` at `end`; its slot stays taken until [`Self::release`].
    fn close(&mut self, window: Open, end: i64, key: u32) -> Closed {
        self.count -= 1;
        Closed {
            start: window.start,
            end,
            key,
            slot: window.slot,
        }
    }

    /// Adds the rows of one flush: `slots[k]` is the slot of row `order[k]`.
    fn update(
        &mut self,
        plan: &WindowPlan,
        rows: &Prepared,
        order: &[u32],
        slots: &[u32],
    ) -> Result<(), ArrowError> {
        let values = rows.values(plan)?;
        for ((accumulator, spec), values) in self
            .accumulators
            .iter_mut()
            .zip(&plan.aggregates)
            .zip(&values)
        {
            accumulator.update(spec, values, &rows.times, Selection::Rows(order), slots);
        }
        Ok(())
    }

    /// Frees the slots of finished windows.
    fn release(&mut self, plan: &WindowPlan, closed: &[Closed]) {
        for window in closed {
            for (accumulator, spec) in self.accumulators.iter_mut().zip(&plan.aggregates) {
                accumulator.reset(spec, window.slot as usize);
            }
            self.free.push(window.slot);
        }
    }
}

#[cfg(test)]
mod tests;
