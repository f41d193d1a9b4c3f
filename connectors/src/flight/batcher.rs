//! [`Batcher`]: cuts the rows a `flight` sink receives into batch-groups (one spool segment
//! each) by rows, bytes and time, whichever limit is reached first.
//!
//! Bytes are the in-memory size of the batches (`get_array_memory_size`, spread evenly over a
//! batch's rows), an upper bound on the encoded size. A batch larger than the row or byte
//! limit is split, so every group stays within the limits (at least one row per group).

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

/// Cuts incoming rows into batch-groups by rows, bytes and time, whichever comes first.
#[derive(Debug)]
pub struct Batcher {
    max_rows: usize,
    max_bytes: u64,
    interval: Duration,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: u64,
    since: Option<Instant>,
}

impl Batcher {
    /// A batcher cutting at `max_rows` rows, `max_bytes` bytes (in memory) or `interval`
    /// after its first row.
    pub fn new(max_rows: usize, max_bytes: u64, interval: Duration) -> Self {
        Self {
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            interval,
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            since: None,
        }
    }

    /// Adds a batch at `now`; returns the groups completed by it (each at most `max_rows`
    /// rows: a large batch is split).
    pub fn push(&mut self, batch: &RecordBatch, now: Instant) -> Vec<Vec<RecordBatch>> {
        let mut done = Vec::new();
        let total = batch.num_rows();
        if total == 0 {
            return done;
        }
        let bytes_per_row = (batch.get_array_memory_size() as u64).div_ceil(total as u64);
        let mut offset = 0;
        while offset < total {
            let room = self.max_rows - self.rows;
            // Rows that fit the byte budget too (at least one, so progress is certain).
            let byte_room =
                (self.max_bytes.saturating_sub(self.bytes) / bytes_per_row.max(1)).max(1) as usize;
            let take = room.min(byte_room).min(total - offset);
            let part = if take == total {
                batch.clone()
            } else {
                batch.slice(offset, take)
            };
            offset += take;
            if self.since.is_none() {
                self.since = Some(now);
            }
            self.batches.push(part);
            self.rows += take;
            self.bytes += bytes_per_row * take as u64;
            if self.rows >= self.max_rows || self.bytes >= self.max_bytes {
                done.extend(self.take());
            }
        }
        done
    }

    /// Whether the time limit of the open group has passed at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.duration_since(since) >= self.interval)
    }

    /// The open group, if it holds rows.
    pub fn take(&mut self) -> Option<Vec<RecordBatch>> {
        self.rows = 0;
        self.bytes = 0;
        self.since = None;
        if self.batches.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.batches))
        }
    }

    /// Rows in the open group.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap()
    }

    fn sizes(groups: &[Vec<RecordBatch>]) -> Vec<usize> {
        groups
            .iter()
            .map(|g| g.iter().map(RecordBatch::num_rows).sum())
            .collect()
    }

    #[test]
    fn groups_are_cut_by_rows_and_large_batches_split() {
        let now = Instant::now();
        let mut batcher = Batcher::new(100, u64::MAX, Duration::from_secs(60));
        assert!(batcher.push(&batch(60), now).is_empty());
        assert_eq!(sizes(&batcher.push(&batch(60), now)), vec![100]);
        assert_eq!(batcher.rows(), 20);
        assert_eq!(sizes(&batcher.push(&batch(250), now)), vec![100, 100]);
        assert_eq!(batcher.rows(), 70);
        assert_eq!(sizes(&[batcher.take().unwrap()]), vec![70]);
        assert!(batcher.take().is_none());
    }

    #[test]
    fn groups_are_cut_by_bytes() {
        let now = Instant::now();
        let one = batch(100);
        let bytes = one.get_array_memory_size() as u64;
        // Room for about two such batches by bytes, far more by rows.
        let mut batcher = Batcher::new(1_000_000, 2 * bytes, Duration::from_secs(60));
        assert!(batcher.push(&one, now).is_empty());
        let done = batcher.push(&one, now);
        assert_eq!(sizes(&done), vec![200]);
        assert_eq!(batcher.rows(), 0);
    }

    #[test]
    fn groups_are_cut_by_time_from_their_first_row() {
        let start = Instant::now();
        let mut batcher = Batcher::new(1000, u64::MAX, Duration::from_secs(5));
        assert!(
            !batcher.due(start + Duration::from_secs(60)),
            "empty: never due"
        );
        batcher.push(&batch(10), start);
        batcher.push(&batch(10), start + Duration::from_secs(4));
        assert!(!batcher.due(start + Duration::from_millis(4999)));
        assert!(batcher.due(start + Duration::from_secs(5)));
        assert_eq!(sizes(&[batcher.take().unwrap()]), vec![20]);
        assert!(!batcher.due(start + Duration::from_secs(10)));
    }
}
