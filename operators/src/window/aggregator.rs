//! [`WindowAggregator`]: one worker's open tumbling windows, fed batch by batch and closed in
//! order of their end. It knows nothing of timely; the operator around it holds the
//! capabilities and decides when the frontier has passed a window's end.
//!
//! Per batch, the work is column-at-a-time: one pass over the event times sorts rows into
//! on-time, late and missing, and finds the windows they fall in (usually one, so no per-row
//! window arithmetic at all); key columns are prepared once (cast or row-encoded), rows are
//! mapped to group ids per window, and then each aggregate runs one tight loop over its column.
//! State is one entry per open window and key, whatever the number of rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::buffer::ScalarBuffer;
use edgeflow_engine::arrow::compute::filter_record_batch;
use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::UTC;

use super::Selection;
use super::accumulate::{Accumulator, Values};
use super::config::WindowPlan;
use super::keys::{BatchKeys, KeyEncoder, KeyTable};

/// The state of one open window.
struct OpenWindow {
    keys: KeyTable,
    accumulators: Vec<Accumulator>,
}

/// What [`WindowAggregator::absorb`] did with one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Absorbed {
    /// Rows added to open windows.
    pub on_time: usize,
    /// Rows whose window may already have closed (window end ≤ watermark): dropped.
    pub late: usize,
    /// Rows with a null event time: dropped.
    pub missing_time: usize,
}

/// One worker's open windows.
pub(crate) struct WindowAggregator {
    plan: Arc<WindowPlan>,
    encoder: KeyEncoder,
    windows: OpenWindows,
    /// Scratch: the on-time rows of a batch (reused across batches).
    selected: Vec<u32>,
    /// Per aggregate, the values of its expression that the last batch made null with a
    /// runtime error (0 for aggregates that read a column).
    expression_errors: Vec<usize>,
    /// Whether some aggregate reads an expression.
    has_expressions: bool,
}

/// The open windows by start, and their total number of groups.
struct OpenWindows {
    open: BTreeMap<i64, OpenWindow>,
    /// Groups over every open window (the state size).
    groups: usize,
    /// Scratch: the group id of each selected row (reused across batches).
    gids: Vec<u32>,
}

/// One batch's inputs, prepared once for every window the batch touches.
struct Prepared {
    keys: BatchKeys,
    values: Vec<Values>,
    /// The event time of every row (ms); null times are never selected.
    times: ScalarBuffer<i64>,
}

/// The start of the window of `size` containing `time` (aligned to the epoch; also right for
/// times before it).
fn start_of(time: i64, size: i64) -> i64 {
    time - time.rem_euclid(size)
}

/// Rows with an event time below this are late at `watermark`: their window (of `size`)
/// ended at or before it, so it may already have been emitted.
pub(crate) fn late_threshold(watermark: u64, size: i64) -> i64 {
    start_of(i64::try_from(watermark).unwrap_or(i64::MAX), size)
}

impl WindowAggregator {
    /// An aggregator with no open window.
    pub(crate) fn new(plan: Arc<WindowPlan>) -> Result<Self, ArrowError> {
        let encoder = KeyEncoder::new(plan.keys.clone(), plan.key_fields.clone())?;
        Ok(Self {
            encoder,
            windows: OpenWindows {
                open: BTreeMap::new(),
                groups: 0,
                gids: Vec::new(),
            },
            selected: Vec::new(),
            expression_errors: vec![0; plan.aggregates.len()],
            has_expressions: plan.aggregates.iter().any(|a| a.expression.is_some()),
            plan,
        })
    }

    /// Per aggregate (in plan order), the expression values of the last absorbed batch that
    /// are null because of a runtime error. Only on-time rows are evaluated.
    pub(crate) fn expression_errors(&self) -> &[usize] {
        &self.expression_errors
    }

    /// Groups held over every open window.
    pub(crate) fn groups(&self) -> usize {
        self.windows.groups
    }

    /// The end of the earliest open window.
    pub(crate) fn first_end(&self) -> Option<i64> {
        self.windows
            .open
            .keys()
            .next()
            .map(|start| start.saturating_add(self.plan.alignment().size_ms))
    }

    /// Adds a batch that arrived with watermark `watermark`; calls `opened(start)` for each
    /// window it opens (before the first row goes in).
    ///
    /// A row is late, and dropped, when its window ends at or before the watermark: that
    /// window may already have been emitted. Every other row's window ends after the
    /// watermark, so the caller can always hold a capability for it.
    pub(crate) fn absorb(
        &mut self,
        rows: &RecordBatch,
        watermark: u64,
        mut opened: impl FnMut(i64),
    ) -> Result<Absorbed, ArrowError> {
        self.expression_errors.fill(0);
        let size = self.plan.alignment().size_ms;
        let times: &TimestampMillisecondArray = rows
            .column(self.plan.event_time)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| {
                ArrowError::SchemaError("event-time column is not a ms timestamp".into())
            })?;
        let raw = times.values();
        let threshold = late_threshold(watermark, size);

        let mut absorbed = Absorbed::default();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        let nulls = times.nulls().filter(|n| n.null_count() > 0);
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
        let (rows, raw, nulls) = if self.has_expressions && absorbed.on_time < rows.num_rows() {
            let mask: BooleanArray = raw
                .iter()
                .enumerate()
                .map(|(row, &time)| {
                    Some(nulls.is_none_or(|n| n.is_valid(row)) && time >= threshold)
                })
                .collect();
            on_time_rows = filter_record_batch(rows, &mask)?;
            let times = on_time_rows
                .column(self.plan.event_time)
                .as_primitive::<TimestampMillisecondType>();
            (&on_time_rows, times.values(), None)
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
        let prepared = Prepared {
            keys: self.encoder.prepare(rows)?,
            values,
            times: rows
                .column(self.plan.event_time)
                .as_primitive::<TimestampMillisecondType>()
                .values()
                .clone(),
        };

        let first = start_of(min, size);
        if first == start_of(max, size) {
            // The common case: every on-time row falls in one window.
            let selection = if absorbed.on_time == rows.num_rows() {
                Selection::All(rows.num_rows())
            } else {
                self.selected.clear();
                self.selected.extend((0..raw.len() as u32).filter(|&row| {
                    nulls.is_none_or(|n| n.is_valid(row as usize)) && raw[row as usize] >= threshold
                }));
                Selection::Rows(&self.selected)
            };
            self.windows.add(
                &self.plan,
                &self.encoder,
                first,
                selection,
                &prepared,
                &mut opened,
            );
        } else {
            // Rows span several windows: bucket them by window, keeping their order (so sums
            // add up in arrival order however the rows were split across workers).
            let mut buckets: Vec<Vec<u32>> = Vec::new();
            let mut index: BTreeMap<i64, usize> = BTreeMap::new();
            let mut current = (i64::MIN, 0usize);
            for (row, &time) in raw.iter().enumerate() {
                if nulls.is_some_and(|n| n.is_null(row)) || time < threshold {
                    continue;
                }
                let start = start_of(time, size);
                if start != current.0 {
                    // Switching windows is rare within a batch: look the bucket up only then.
                    let bucket = *index.entry(start).or_insert_with(|| {
                        buckets.push(Vec::new());
                        buckets.len() - 1
                    });
                    current = (start, bucket);
                }
                buckets[current.1].push(row as u32);
            }
            for (start, bucket) in index {
                self.windows.add(
                    &self.plan,
                    &self.encoder,
                    start,
                    Selection::Rows(&buckets[bucket]),
                    &prepared,
                    &mut opened,
                );
            }
        }
        Ok(absorbed)
    }

    /// Closes the earliest open window: returns its start and its rows, sorted by key.
    pub(crate) fn close_first(&mut self) -> Result<Option<(i64, RecordBatch)>, ArrowError> {
        let Some((start, window)) = self.windows.open.pop_first() else {
            return Ok(None);
        };
        self.windows.groups -= window.keys.len();
        let (key_columns, order) = self.encoder.sorted(&window.keys)?;
        let end = start.saturating_add(self.plan.alignment().size_ms);
        let n = order.len();
        let bound = |time: i64| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(vec![time; n]).with_timezone(UTC))
        };
        let mut columns = vec![bound(start), bound(end)];
        columns.extend(key_columns);
        for (accumulator, spec) in window.accumulators.iter().zip(&self.plan.aggregates) {
            columns.push(accumulator.finish(spec, &order)?);
        }
        let batch = RecordBatch::try_new(self.plan.output_schema.clone(), columns)?;
        Ok(Some((start, batch)))
    }
}

impl OpenWindows {
    /// Adds the selected rows of a batch to the window starting at `start`, opening it first
    /// if needed.
    fn add(
        &mut self,
        plan: &WindowPlan,
        encoder: &KeyEncoder,
        start: i64,
        rows: Selection<'_>,
        prepared: &Prepared,
        opened: &mut impl FnMut(i64),
    ) {
        let window = self.open.entry(start).or_insert_with(|| {
            opened(start);
            OpenWindow {
                keys: encoder.table(),
                accumulators: plan.aggregates.iter().map(Accumulator::new).collect(),
            }
        });
        let before = window.keys.len();
        window.keys.assign(&prepared.keys, rows, &mut self.gids);
        let after = window.keys.len();
        if after > before {
            self.groups += after - before;
            for (accumulator, spec) in window.accumulators.iter_mut().zip(&plan.aggregates) {
                accumulator.grow(spec, after);
            }
        }
        for ((accumulator, spec), values) in window
            .accumulators
            .iter_mut()
            .zip(&plan.aggregates)
            .zip(&prepared.values)
        {
            accumulator.update(spec, values, &prepared.times, rows, &self.gids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowConfig;
    use edgeflow_engine::arrow::array::{Float64Array, StringArray};
    use edgeflow_engine::arrow::compute::cast;
    use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
    use edgeflow_engine::arrow::util::pretty::pretty_format_batches;
    use edgeflow_engine::schema::{schema_with_event_time, timestamp_type};

    fn input() -> SchemaRef {
        schema_with_event_time(
            [
                Field::new("device_id", DataType::Utf8, true),
                Field::new("ts", timestamp_type(), true),
                Field::new("temperature", DataType::Float64, true),
            ],
            Some("ts"),
        )
    }

    fn aggregator(group_by: &str) -> WindowAggregator {
        aggregator_of(
            group_by,
            "n = \"count()\", avg = \"mean(temperature)\", hi = \"max(temperature)\"",
        )
    }

    fn aggregator_of(group_by: &str, aggregates: &str) -> WindowAggregator {
        let text =
            format!("size = \"10ms\"\ngroup_by = {group_by}\naggregates = {{ {aggregates} }}");
        let config: WindowConfig = edgeflow_engine::parse_options(text.parse().unwrap()).unwrap();
        let plan = config.plan_window(&[input()]).unwrap();
        WindowAggregator::new(Arc::new(plan)).unwrap()
    }

    fn batch(rows: &[(Option<&str>, Option<i64>, Option<f64>)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(rows.iter().map(|r| r.0).collect::<StringArray>()),
                Arc::new(
                    rows.iter()
                        .map(|r| r.1)
                        .collect::<TimestampMillisecondArray>()
                        .with_timezone(UTC),
                ),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
            ],
        )
        .unwrap()
    }

    /// Closes every window and pretty-prints the rows, window bounds as plain milliseconds
    /// (Arrow's display of a "UTC" zone needs the chrono-tz feature, which we leave out).
    fn drain(aggregator: &mut WindowAggregator) -> String {
        let mut batches = Vec::new();
        while let Some((_, batch)) = aggregator.close_first().unwrap() {
            let mut columns = batch.columns().to_vec();
            let mut fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            for bound in 0..2 {
                columns[bound] = cast(&columns[bound], &DataType::Int64).unwrap();
                fields[bound] = Field::new(fields[bound].name(), DataType::Int64, false);
            }
            let schema = Arc::new(edgeflow_engine::arrow::datatypes::Schema::new(fields));
            batches.push(RecordBatch::try_new(schema, columns).unwrap());
        }
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[test]
    fn rows_split_into_windows_and_late_rows_are_dropped() {
        let mut agg = aggregator("[\"device_id\"]");
        let mut opened = Vec::new();
        let absorbed = agg
            .absorb(
                &batch(&[
                    (Some("b"), Some(3), Some(1.0)),
                    (Some("a"), Some(12), Some(2.0)),
                    (Some("b"), Some(5), Some(f64::NAN)),
                    (None, None, Some(9.0)),
                    (Some("a"), Some(17), None),
                ]),
                0,
                |start| opened.push(start),
            )
            .unwrap();
        assert_eq!(
            absorbed,
            Absorbed {
                on_time: 4,
                late: 0,
                missing_time: 1
            }
        );
        assert_eq!(opened, [0, 10]);
        assert_eq!(agg.groups(), 2);
        assert_eq!(agg.first_end(), Some(10));

        // Watermark 12: window [0, 10) may be gone, so 3 and 9 are late; 10 and 15 are not.
        let absorbed = agg
            .absorb(
                &batch(&[
                    (Some("a"), Some(3), Some(5.0)),
                    (Some("a"), Some(9), Some(5.0)),
                    (Some("c"), Some(10), Some(4.0)),
                    (None, Some(15), Some(1.0)),
                ]),
                12,
                |start| opened.push(start),
            )
            .unwrap();
        assert_eq!(
            absorbed,
            Absorbed {
                on_time: 2,
                late: 2,
                missing_time: 0
            }
        );
        assert_eq!(opened, [0, 10]);
        assert_eq!(agg.groups(), 4);

        let expected = "\
+--------------+------------+-----------+---+-----+-----+
| window_start | window_end | device_id | n | avg | hi  |
+--------------+------------+-----------+---+-----+-----+
| 0            | 10         | b         | 2 | 1.0 | 1.0 |
| 10           | 20         |           | 1 | 1.0 | 1.0 |
| 10           | 20         | a         | 2 | 2.0 | 2.0 |
| 10           | 20         | c         | 1 | 4.0 | 4.0 |
+--------------+------------+-----------+---+-----+-----+";
        assert_eq!(drain(&mut agg), expected);
        assert_eq!(agg.groups(), 0);
        assert_eq!(agg.first_end(), None);
    }

    #[test]
    fn expressions_read_on_time_rows_only() {
        let mut agg = aggregator_of(
            "[\"device_id\"]",
            "hot = \"count_if(temperature > 2)\", f = \"mean(temperature * 2 + 1)\", \
             q = \"sum(10 / temperature)\"",
        );
        let mut opened = Vec::new();
        agg.absorb(
            &batch(&[
                (Some("a"), Some(12), Some(2.0)),
                (Some("a"), Some(13), Some(0.0)),
                (Some("b"), Some(14), None),
            ]),
            0,
            |start| opened.push(start),
        )
        .unwrap();
        // 10 / 0 is a runtime error (null); 10 / null is plain null.
        assert_eq!(agg.expression_errors(), [0, 0, 1]);
        // Watermark 12: the rows at 3 and 5 are late, and so is their division by zero; the
        // row without event time is dropped too.
        let absorbed = agg
            .absorb(
                &batch(&[
                    (Some("a"), Some(3), Some(0.0)),
                    (Some("a"), Some(15), Some(5.0)),
                    (Some("b"), Some(5), Some(0.0)),
                    (Some("b"), None, Some(0.0)),
                    (Some("b"), Some(16), Some(f64::NAN)),
                ]),
                12,
                |start| opened.push(start),
            )
            .unwrap();
        assert_eq!((absorbed.on_time, absorbed.late), (2, 2));
        assert_eq!(agg.expression_errors(), [0, 0, 0]);
        assert_eq!(opened, [10]);
        // a: (5 + 1 + 11) / 3 and 10 / 2 + 10 / 5; b: NaN > 2 is true (Arrow's total order),
        // and the NaN of 10 / NaN is skipped like a NaN field value.
        let expected = "\
+--------------+------------+-----------+-----+-------------------+-----+
| window_start | window_end | device_id | hot | f                 | q   |
+--------------+------------+-----------+-----+-------------------+-----+
| 10           | 20         | a         | 1   | 5.666666666666667 | 7.0 |
| 10           | 20         | b         | 1   |                   |     |
+--------------+------------+-----------+-----+-------------------+-----+";
        assert_eq!(drain(&mut agg), expected);
    }

    #[test]
    fn ungrouped_window_and_many_windows_in_one_batch() {
        let mut agg = aggregator("[]");
        let rows: Vec<_> = (0..100)
            .rev()
            .map(|t| (Some("x"), Some(t * 7), Some(t as f64)))
            .collect();
        let mut opened = Vec::new();
        agg.absorb(&batch(&rows), 0, |s| opened.push(s)).unwrap();
        assert_eq!(opened.len(), 70);
        assert_eq!(agg.groups(), 70);
        let mut total = 0;
        while let Some((start, batch)) = agg.close_first().unwrap() {
            assert_eq!(batch.num_rows(), 1);
            let n = batch
                .column(2)
                .as_primitive::<edgeflow_engine::arrow::datatypes::Int64Type>()
                .value(0);
            let expected = (0..100).filter(|t| t * 7 / 10 * 10 == start).count() as i64;
            assert_eq!(n, expected, "window {start}");
            total += n;
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn negative_event_times_are_late_at_watermark_zero() {
        let mut agg = aggregator("[]");
        let absorbed = agg
            .absorb(
                &batch(&[
                    (Some("a"), Some(-5), Some(1.0)),
                    (Some("a"), Some(0), Some(1.0)),
                ]),
                0,
                |_| {},
            )
            .unwrap();
        assert_eq!(absorbed.late, 1);
        assert_eq!(absorbed.on_time, 1);
    }
}
