//! The first step of operators that need each key's rows in event-time order (session,
//! sliding and count windows, anomaly detection): splitting an arriving batch by its
//! watermark into on-time rows, to buffer until the watermark passes them, late rows, for the
//! `late` side output, and rows without an event time.

use edgeflow_engine::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::compute::filter_record_batch;
use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;
use edgeflow_engine::arrow::error::ArrowError;

/// What splitting one batch found.
#[derive(Debug, Default)]
pub(crate) struct Absorbed {
    /// Rows buffered until the watermark passes them.
    pub on_time: usize,
    /// Rows with an event time below the batch's watermark: not processed.
    pub late: usize,
    /// Rows with a null event time: dropped.
    pub missing_time: usize,
    /// The late rows, unchanged, for the `late` side output.
    pub late_rows: Option<RecordBatch>,
}

/// A buffered batch of on-time rows and the range of their event times.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub rows: RecordBatch,
    pub min: i64,
    pub max: i64,
}

/// The event-time column of `rows`.
pub(crate) fn event_times(
    rows: &RecordBatch,
    column: usize,
) -> Result<&TimestampMillisecondArray, ArrowError> {
    rows.column(column)
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| ArrowError::SchemaError("event-time column is not a ms timestamp".into()))
}

/// A timely timestamp as an event time.
pub(crate) fn to_time(watermark: u64) -> i64 {
    i64::try_from(watermark).unwrap_or(i64::MAX)
}

/// Splits `rows`, which arrived with watermark `watermark`, by their event time (column
/// `event_time`): rows below the watermark are late, rows without a time are missing, and the
/// others come back as one [`Buffered`] batch (`None` when there are none).
pub(crate) fn split_on_watermark(
    rows: &RecordBatch,
    event_time: usize,
    watermark: u64,
) -> Result<(Absorbed, Option<Buffered>), ArrowError> {
    let bound = to_time(watermark);
    let times = event_times(rows, event_time)?;
    let nulls = times.nulls().filter(|n| n.null_count() > 0);
    let mut absorbed = Absorbed::default();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for (row, &time) in times.values().iter().enumerate() {
        if nulls.is_some_and(|n| n.is_null(row)) {
            absorbed.missing_time += 1;
        } else if time < bound {
            absorbed.late += 1;
        } else {
            min = min.min(time);
            max = max.max(time);
        }
    }
    absorbed.on_time = rows.num_rows() - absorbed.late - absorbed.missing_time;
    let mask = |late: bool| -> BooleanArray {
        times
            .values()
            .iter()
            .enumerate()
            .map(|(row, &time)| {
                Some(nulls.is_none_or(|n| n.is_valid(row)) && (time < bound) == late)
            })
            .collect()
    };
    if absorbed.late > 0 {
        absorbed.late_rows = Some(filter_record_batch(rows, &mask(true))?);
    }
    let buffered = if absorbed.on_time == 0 {
        None
    } else {
        let rows = if absorbed.on_time == rows.num_rows() {
            rows.clone()
        } else {
            filter_record_batch(rows, &mask(false))?
        };
        Some(Buffered { rows, min, max })
    };
    Ok((absorbed, buffered))
}
