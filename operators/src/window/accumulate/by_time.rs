//! `first`, `last`, `min_at` and `max_at`: per group, one value and the event time it came
//! with, replaced when a row beats it. Rows are seen in arrival order, so ties on time go to
//! the first row to arrive (`first`, `min_at`, `max_at`) or the last one (`last`).
//!
//! `first` and `last` keep numbers (as i64 or f64, cast back to the argument's type at the
//! end), bools (as 0 and 1) and strings (one `String` per group, its buffer reused when a
//! later row replaces it). `min_at` and `max_at` keep the extreme value and output its time.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::schema::UTC;

use super::{Values, each_float, each_int, each_text};
use crate::fields::Numeric;
use crate::window::Selection;
use crate::window::expr::AggregateFunction;
use crate::window::plan_aggregate::AggregateSpec;

/// The values kept per group, in the type they are computed with.
#[derive(Clone, Debug)]
enum Slots {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Text(Vec<String>),
}

/// State of `first`, `last`, `min_at` or `max_at` over every group of one window.
#[derive(Clone, Debug)]
pub(crate) struct ByTime {
    function: AggregateFunction,
    /// Event time (ms) of the kept value.
    time: Vec<i64>,
    /// Whether the group saw a value.
    seen: Vec<bool>,
    values: Slots,
    /// Bytes of the strings' buffers, kept up to date as they grow.
    bytes: usize,
}

/// The update loops of one value type: for each function, a plain loop in which
/// `beats(x, t, kept, kept_time)` (a closure the compiler inlines) tells whether a row replaces
/// the kept value.
macro_rules! update_typed {
    ($function:expr, $each:ident, $input:expr, $rows:expr, $gids:expr, $times:expr,
     $time:expr, $seen:expr, $kept:expr) => {{
        let (time, seen, kept, times) = ($time, $seen, $kept, $times);
        macro_rules! run {
            ($beats:expr) => {
                $each($input, $rows, $gids, |g, row, x| {
                    let t = times[row];
                    if !seen[g] || $beats(x, t, kept[g], time[g]) {
                        seen[g] = true;
                        time[g] = t;
                        kept[g] = x;
                    }
                })
            };
        }
        match $function {
            AggregateFunction::First => run!(|_, t, _, old| t < old),
            AggregateFunction::Last => run!(|_, t, _, old| t >= old),
            AggregateFunction::MinAt => run!(|x, t, v, old| x < v || (x == v && t < old)),
            _ => run!(|x, t, v, old| x > v || (x == v && t < old)),
        }
    }};
}

impl ByTime {
    pub(super) fn new(spec: &AggregateSpec) -> Self {
        Self {
            function: spec.function,
            time: Vec::new(),
            seen: Vec::new(),
            values: match spec.numeric {
                Some(Numeric::Float) => Slots::Float(Vec::new()),
                Some(Numeric::Int) => Slots::Int(Vec::new()),
                None => Slots::Text(Vec::new()),
            },
            bytes: 0,
        }
    }

    pub(super) fn grow(&mut self, groups: usize) {
        self.time.resize(groups, 0);
        self.seen.resize(groups, false);
        match &mut self.values {
            Slots::Float(v) => v.resize(groups, 0.0),
            Slots::Int(v) => v.resize(groups, 0),
            Slots::Text(v) => v.resize(groups, String::new()),
        }
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.seen[group] = false;
        if let Slots::Text(v) = &mut self.values {
            // Give the memory back: a reset group may stay empty for long.
            self.bytes -= v[group].capacity();
            v[group] = String::new();
        }
    }

    pub(super) fn update(
        &mut self,
        values: &Values,
        times: &[i64],
        rows: Selection<'_>,
        gids: &[u32],
    ) {
        let (time, seen, bytes) = (&mut self.time, &mut self.seen, &mut self.bytes);
        match (&mut self.values, values) {
            (Slots::Float(kept), Values::Float(input)) => update_typed!(
                self.function,
                each_float,
                input,
                rows,
                gids,
                times,
                time,
                seen,
                kept
            ),
            (Slots::Int(kept), Values::Int(input)) => update_typed!(
                self.function,
                each_int,
                input,
                rows,
                gids,
                times,
                time,
                seen,
                kept
            ),
            (Slots::Text(kept), Values::Text(input)) => {
                // Strings only for first and last (the planner refuses min_at of strings).
                let last = self.function == AggregateFunction::Last;
                each_text(input, rows, gids, |g, row, x| {
                    let t = times[row];
                    if !seen[g] || (if last { t >= time[g] } else { t < time[g] }) {
                        seen[g] = true;
                        time[g] = t;
                        let before = kept[g].capacity();
                        kept[g].clear();
                        kept[g].push_str(x);
                        *bytes += kept[g].capacity() - before;
                    }
                });
            }
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, order: &[u32]) -> ArrayRef {
        let seen = |g: u32| self.seen[g as usize];
        if matches!(
            self.function,
            AggregateFunction::MinAt | AggregateFunction::MaxAt
        ) {
            let times = order
                .iter()
                .map(|&g| seen(g).then(|| self.time[g as usize]));
            return Arc::new(TimestampMillisecondArray::from_iter(times).with_timezone(UTC));
        }
        match &self.values {
            Slots::Float(v) => Arc::new(Float64Array::from_iter(
                order.iter().map(|&g| seen(g).then(|| v[g as usize])),
            )),
            Slots::Int(v) => Arc::new(Int64Array::from_iter(
                order.iter().map(|&g| seen(g).then(|| v[g as usize])),
            )),
            Slots::Text(v) => Arc::new(StringArray::from_iter(
                order
                    .iter()
                    .map(|&g| seen(g).then(|| v[g as usize].as_str())),
            )),
        }
    }

    /// Bytes held beyond the fixed slots (the strings' buffers), in constant time.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use edgeflow_engine::arrow::array::{Array, AsArray, BooleanArray, Int32Array};
    use edgeflow_engine::arrow::datatypes::{
        DataType, Float64Type, Int32Type, TimestampMillisecondType,
    };
    use edgeflow_engine::schema::timestamp_type;

    use super::super::tests::{f64s, run_batches, spec};
    use super::*;

    /// Two batches of one group, out of event-time order, with ties at 10 and 30.
    fn disordered(column: impl Fn(Vec<i64>) -> ArrayRef) -> Vec<(ArrayRef, Vec<i64>, Vec<u32>)> {
        vec![
            (column(vec![5, 7, 1]), vec![30, 10, 50], vec![0, 0, 0]),
            (
                column(vec![9, 7, 2, 8]),
                vec![10, 30, 40, 50],
                vec![0, 0, 0, 0],
            ),
        ]
    }

    fn floats(values: Vec<i64>) -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            values.into_iter().map(|v| v as f64),
        ))
    }

    #[test]
    fn first_and_last_go_by_event_time_with_arrival_order_on_ties() {
        let f = Some(Numeric::Float);
        let first = run_batches(
            &spec(AggregateFunction::First, f, DataType::Float64),
            &disordered(floats),
            1,
        );
        // Time 10 holds 7 (first batch) then 9: the first to arrive wins.
        assert_eq!(f64s(&first), [Some(7.0)]);
        let last = run_batches(
            &spec(AggregateFunction::Last, f, DataType::Float64),
            &disordered(floats),
            1,
        );
        // Time 50 holds 1 then 8: the last to arrive wins.
        assert_eq!(f64s(&last), [Some(8.0)]);
    }

    #[test]
    fn min_at_and_max_at_give_the_earliest_time_of_the_extreme() {
        let f = Some(Numeric::Float);
        let at = |function| {
            let out = run_batches(&spec(function, f, timestamp_type()), &disordered(floats), 1);
            assert_eq!(out.data_type(), &timestamp_type());
            out.as_primitive::<TimestampMillisecondType>().value(0)
        };
        // 7 is at 10 and at 30 but is not an extreme; 1 is the minimum (at 50), 9 the maximum.
        assert_eq!(at(AggregateFunction::MinAt), 50);
        assert_eq!(at(AggregateFunction::MaxAt), 10);
        // Ties on the value: the earliest event time, whatever the arrival order.
        let ties = vec![(floats(vec![4, 4, 1, 4]), vec![70, 20, 90, 40], vec![0; 4])];
        let max_at = run_batches(
            &spec(AggregateFunction::MaxAt, f, timestamp_type()),
            &ties,
            1,
        );
        assert_eq!(
            max_at.as_primitive::<TimestampMillisecondType>().value(0),
            20
        );
    }

    #[test]
    fn ints_bools_and_strings_keep_their_type() {
        let ints = |values: Vec<i64>| -> ArrayRef {
            Arc::new(Int32Array::from_iter_values(
                values.into_iter().map(|v| v as i32),
            ))
        };
        let i = Some(Numeric::Int);
        let first = run_batches(
            &spec(AggregateFunction::First, i, DataType::Int32),
            &disordered(ints),
            1,
        );
        assert_eq!(first.as_primitive::<Int32Type>().value(0), 7);

        let bools = |values: Vec<i64>| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(
                values.into_iter().map(|v| Some(v > 6)),
            ))
        };
        let last = run_batches(
            &spec(AggregateFunction::Last, i, DataType::Boolean),
            &disordered(bools),
            1,
        );
        assert_eq!(last.data_type(), &DataType::Boolean);
        assert!(last.as_boolean().value(0), "8 > 6");

        let strings = |values: Vec<i64>| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                values.into_iter().map(|v| format!("s{v}")),
            ))
        };
        for (function, expected) in [
            (AggregateFunction::First, "s7"),
            (AggregateFunction::Last, "s8"),
        ] {
            let out = run_batches(
                &spec(function, None, DataType::LargeUtf8),
                &disordered(strings),
                1,
            );
            assert_eq!(out.data_type(), &DataType::LargeUtf8);
            assert_eq!(out.as_string::<i64>().value(0), expected);
        }
    }

    #[test]
    fn groups_without_values_are_null() {
        let column: ArrayRef = Arc::new(Float64Array::from(vec![None, Some(f64::NAN), Some(3.0)]));
        let out = run_batches(
            &spec(
                AggregateFunction::First,
                Some(Numeric::Float),
                DataType::Float64,
            ),
            &[(column, vec![1, 2, 3], vec![0, 0, 1])],
            3,
        );
        assert_eq!(f64s(&out), [None, Some(3.0), None]);
        assert_eq!(out.as_primitive::<Float64Type>().null_count(), 2);
    }
}
