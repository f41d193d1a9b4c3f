//! Key values and output rows of the ordered windows: [`KeyValues`] keeps each key id's values
//! for the output, and [`KeyValues::output`] turns closed windows into rows sorted by
//! (`window_start`, key), so the output does not depend on how many workers ran.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use edgeflow_engine::arrow::compute::{SortColumn, concat, interleave, lexsort_to_indices, take};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::UTC;

use super::Closed;
use crate::window::accumulate::Accumulator;
use crate::window::config::WindowPlan;

/// Key id → key values, in chunks of consecutive ids (each flush that meets new keys adds
/// one; the last two merge while the older is at most twice the newer, so there are few).
pub(super) struct KeyValues {
    columns: usize,
    /// Per chunk, its first key id and one array per key column.
    chunks: Vec<(u32, Vec<ArrayRef>)>,
}

impl KeyValues {
    pub(super) fn new(columns: usize) -> Self {
        Self {
            columns,
            chunks: Vec::new(),
        }
    }

    /// Records the values of key ids `before..after`, new in `rows` (whose key ids are `ids`).
    pub(super) fn add(
        &mut self,
        rows: &RecordBatch,
        key_columns: &[usize],
        ids: &[u32],
        before: usize,
        after: usize,
    ) -> Result<(), ArrowError> {
        if self.columns == 0 {
            return Ok(());
        }
        let mut first = vec![u32::MAX; after - before];
        for (row, &id) in ids.iter().enumerate() {
            if let Some(slot) = (id as usize).checked_sub(before)
                && first[slot] == u32::MAX
            {
                first[slot] = row as u32;
            }
        }
        let first = UInt32Array::from(first);
        let chunk = key_columns
            .iter()
            .map(|&c| take(rows.column(c), &first, None))
            .collect::<Result<Vec<_>, _>>()?;
        self.chunks.push((before as u32, chunk));
        while let [.., (_, older), (_, newer)] = self.chunks.as_slice()
            && older[0].len() <= 2 * newer[0].len()
        {
            let (_, newer) = self.chunks.pop().expect("two chunks");
            let (_, older) = self.chunks.last_mut().expect("two chunks");
            for (a, b) in older.iter_mut().zip(&newer) {
                *a = concat(&[a.as_ref(), b.as_ref()])?;
            }
        }
        Ok(())
    }

    /// Keeps the values of key ids `ids` (ascending), which become ids `0..ids.len()`.
    pub(super) fn retain(&mut self, ids: &[u32]) -> Result<(), ArrowError> {
        if self.columns == 0 {
            return Ok(());
        }
        let columns = self.take(ids.iter().copied())?;
        self.chunks = if ids.is_empty() {
            Vec::new()
        } else {
            vec![(0, columns)]
        };
        Ok(())
    }

    /// Bytes held by the key values.
    pub(super) fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .flat_map(|(_, columns)| columns)
            .map(|c| c.get_array_memory_size())
            .sum()
    }

    /// The key columns of `ids`.
    fn take(&self, ids: impl Iterator<Item = u32>) -> Result<Vec<ArrayRef>, ArrowError> {
        if self.columns == 0 {
            return Ok(Vec::new());
        }
        let at: Vec<(usize, usize)> = ids
            .map(|id| {
                let chunk = self.chunks.partition_point(|(first, _)| *first <= id) - 1;
                (chunk, (id - self.chunks[chunk].0) as usize)
            })
            .collect();
        (0..self.columns)
            .map(|column| {
                let arrays: Vec<&dyn Array> = self
                    .chunks
                    .iter()
                    .map(|(_, c)| c[column].as_ref())
                    .collect();
                interleave(&arrays, &at)
            })
            .collect()
    }

    /// The output rows of `closed`, finished from `accumulators`, sorted by (`window_start`,
    /// key, `window_end`, then closing order); `None` for no rows.
    pub(super) fn output(
        &self,
        plan: &WindowPlan,
        closed: &[Closed],
        accumulators: &[Accumulator],
    ) -> Result<Option<RecordBatch>, ArrowError> {
        if closed.is_empty() {
            return Ok(None);
        }
        let starts = Int64Array::from_iter_values(closed.iter().map(|w| w.start));
        let ends = Int64Array::from_iter_values(closed.iter().map(|w| w.end));
        let keys = self.take(closed.iter().map(|w| w.key))?;
        let sequence = UInt32Array::from_iter_values(0..closed.len() as u32);
        let mut sort: Vec<SortColumn> = vec![SortColumn {
            values: Arc::new(starts),
            options: None,
        }];
        sort.extend(keys.iter().map(|k| SortColumn {
            values: k.clone(),
            options: None,
        }));
        sort.push(SortColumn {
            values: Arc::new(ends),
            options: None,
        });
        // The sequence makes the order total, so it does not rest on the sort's stability.
        sort.push(SortColumn {
            values: Arc::new(sequence),
            options: None,
        });
        let indices = lexsort_to_indices(&sort, None)?;
        let sorted: Vec<&Closed> = indices
            .values()
            .iter()
            .map(|&i| &closed[i as usize])
            .collect();
        let bound = |f: fn(&Closed) -> i64| -> ArrayRef {
            Arc::new(
                TimestampMillisecondArray::from_iter_values(sorted.iter().map(|w| f(w)))
                    .with_timezone(UTC),
            )
        };
        let mut columns = vec![bound(|w| w.start), bound(|w| w.end)];
        for key in &keys {
            columns.push(take(key, &indices, None)?);
        }
        let order: Vec<u32> = sorted.iter().map(|w| w.slot).collect();
        for (accumulator, spec) in accumulators.iter().zip(&plan.aggregates) {
            columns.push(accumulator.finish(spec, &order)?);
        }
        RecordBatch::try_new(plan.output_schema.clone(), columns).map(Some)
    }
}
