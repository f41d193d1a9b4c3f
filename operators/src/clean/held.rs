//! The rows a `linear` fill holds back until their values are known, kept per batch as they
//! would have left (output schema), with the timestamp of the batch that brought them.
//!
//! Each held row has a **ticket** from the per-key state; the rows held from one batch have
//! consecutive tickets, so a ticket finds its batch by a range lookup and its row by offset.
//! When every `linear` fill a row waits for is resolved, the row is ready; [`HeldRows::drain`]
//! takes the ready rows of each batch with their stamp.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeflow_engine::EventTime;
use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, UInt32Array,
};
use edgeflow_engine::arrow::compute::{cast, take_record_batch};
use edgeflow_engine::arrow::error::ArrowError;

use super::interpolate::Resolution;
use super::rowwise::as_f64;

/// The held rows of one batch.
#[derive(Debug)]
struct HeldBatch {
    stamp: EventTime,
    rows: RecordBatch,
    /// Per fill rule and row: the resolved value (`Some(None)`: left unfilled), if resolved.
    values: Vec<Vec<Option<Option<f64>>>>,
    /// Per row: how many fills it still waits for.
    waiting: Vec<u8>,
    /// Rows ready to leave since the last drain.
    ready: Vec<u32>,
    /// Rows not yet gone.
    live: usize,
}

/// The held rows of one worker.
#[derive(Debug)]
pub(crate) struct HeldRows {
    /// Per fill rule: its value column and its marker column in the output schema.
    columns: Vec<(usize, usize)>,
    /// By the ticket of the first row.
    batches: BTreeMap<u64, HeldBatch>,
    rows: usize,
    bytes: usize,
}

impl HeldRows {
    pub(crate) fn new(columns: Vec<(usize, usize)>) -> Self {
        Self {
            columns,
            batches: BTreeMap::new(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Memory of the held rows, roughly.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The stamps of the batches that still have rows here.
    pub(crate) fn stamps(&self) -> impl Iterator<Item = EventTime> + '_ {
        self.batches.values().map(|b| b.stamp)
    }

    /// Holds `rows` (from a batch stamped `stamp`), whose tickets start at `first`, each
    /// waiting for the given number of fills.
    pub(crate) fn hold(
        &mut self,
        stamp: EventTime,
        rows: RecordBatch,
        first: u64,
        waiting: Vec<u8>,
    ) {
        let n = rows.num_rows();
        self.rows += n;
        let size = rows.get_array_memory_size();
        self.bytes += size;
        self.batches.insert(
            first,
            HeldBatch {
                stamp,
                rows,
                values: vec![vec![None; n]; self.columns.len()],
                waiting,
                ready: Vec::new(),
                live: n,
            },
        );
    }

    /// Records the value of one fill of one held row. Returns false for an unknown ticket
    /// (which would be a bug).
    pub(crate) fn resolve(&mut self, resolution: &Resolution) -> bool {
        let Some((&first, batch)) = self.batches.range_mut(..=resolution.ticket).next_back() else {
            return false;
        };
        let row = (resolution.ticket - first) as usize;
        if row >= batch.waiting.len() || batch.waiting[row] == 0 {
            return false;
        }
        batch.values[resolution.rule][row] = Some(resolution.value);
        batch.waiting[row] -= 1;
        if batch.waiting[row] == 0 {
            batch.ready.push(row as u32);
        }
        true
    }

    /// Takes the rows ready to leave, per stamp (oldest batch first, rows in their order).
    pub(crate) fn drain(&mut self) -> Result<Vec<(EventTime, RecordBatch)>, ArrowError> {
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (&first, batch) in &mut self.batches {
            if batch.ready.is_empty() {
                continue;
            }
            batch.ready.sort_unstable();
            let ready = std::mem::take(&mut batch.ready);
            let indices = UInt32Array::from(ready.clone());
            let taken = take_record_batch(&batch.rows, &indices)?;
            let mut columns = taken.columns().to_vec();
            for (rule, &(value_column, marker_column)) in self.columns.iter().enumerate() {
                let resolved = &batch.values[rule];
                if ready.iter().all(|&r| resolved[r as usize].is_none()) {
                    continue;
                }
                let before = as_f64(&columns[value_column])?;
                let marks = columns[marker_column].as_boolean().clone();
                let values: Float64Array = ready
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| match resolved[r as usize] {
                        Some(value) => value,
                        None => before.is_valid(i).then(|| before.value(i)),
                    })
                    .collect();
                let marks: BooleanArray = ready
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| {
                        Some(marks.value(i) || matches!(resolved[r as usize], Some(Some(_))))
                    })
                    .collect();
                let data_type = columns[value_column].data_type().clone();
                columns[value_column] = cast(&(Arc::new(values) as ArrayRef), &data_type)?;
                columns[marker_column] = Arc::new(marks);
            }
            out.push((batch.stamp, RecordBatch::try_new(taken.schema(), columns)?));
            batch.live -= ready.len();
            self.rows -= ready.len();
            if batch.live == 0 {
                gone.push(first);
            }
        }
        for first in gone {
            if let Some(batch) = self.batches.remove(&first) {
                self.bytes -= batch.rows.get_array_memory_size();
            }
        }
        Ok(out)
    }
}
