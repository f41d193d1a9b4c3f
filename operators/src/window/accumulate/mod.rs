//! Aggregate state of one open window: one [`Accumulator`] per aggregate, each a set of
//! columns indexed by group id (struct of arrays), updated a batch column at a time: one
//! tight loop per aggregate and batch.
//!
//! Nulls and NaN are skipped by every function that reads a field or an expression's values;
//! `count()` counts rows and `count_if(condition)` the rows where the condition is true.
//! A group that saw no value gets null from every function but the counts (`count`,
//! `count_if`, `distinct_count`), which give 0.
//!
//! The families, one file each beside this one:
//!
//! | file       | functions                                        | state per group            |
//! |------------|--------------------------------------------------|----------------------------|
//! | here       | `count`, `count_if`, `sum`, `mean`, `min`, `max` | a counter or two           |
//! | `by_time`  | `first`, `last`, `min_at`, `max_at`              | a value and its time       |
//! | `moments`  | `stddev`, `variance`, `stddev_pop`, `var_pop`    | Welford's n, mean, m2      |
//! | `sketch`   | `median`, `quantile`, `distinct_count`           | a DDSketch / a set or HLL  |
//! | `series`   | `rate`, `increase`, `time_weighted_mean`, `integral` | every (time, value) sample |

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, PrimitiveArray, StringArray,
};
use edgeflow_engine::arrow::buffer::NullBuffer;
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type, Int64Type};
use edgeflow_engine::arrow::error::ArrowError;

use self::by_time::ByTime;
use self::moments::Moments;
use self::series::Series;
use self::sketch::{Distinct, Quantiles};
use super::Selection;
use super::expr::AggregateFunction;
use super::plan_aggregate::AggregateSpec;
use crate::fields::Numeric;

mod by_time;
mod moments;
mod series;
pub(crate) mod sketch;

/// One batch's input column of an aggregate, in the type the aggregate computes with.
#[derive(Clone, Debug)]
pub(crate) enum Values {
    /// `count()`: no column.
    None,
    /// A float column, widened to f64.
    Float(Float64Array),
    /// An integer column, widened to i64.
    Int(Int64Array),
    /// Any other column (only `count(field)` reads it, through its validity).
    Other(ArrayRef),
    /// Strings, for `first`, `last` and `distinct_count`.
    Text(StringArray),
    /// The condition of `count_if`.
    Bool(BooleanArray),
}

impl Values {
    /// Prepares `column` for `spec`.
    pub(crate) fn prepare(
        spec: &AggregateSpec,
        column: Option<&ArrayRef>,
    ) -> Result<Self, ArrowError> {
        let Some(column) = column else {
            return Ok(Self::None);
        };
        if spec.function == AggregateFunction::CountIf {
            let condition = column.as_boolean_opt().ok_or_else(|| {
                ArrowError::SchemaError("the condition of count_if is not a bool column".into())
            })?;
            return Ok(Self::Bool(condition.clone()));
        }
        Ok(match spec.numeric {
            Some(Numeric::Float) => {
                let column = match column.data_type() {
                    DataType::Float64 => column.clone(),
                    _ => cast(column, &DataType::Float64)?,
                };
                Self::Float(column.as_primitive::<Float64Type>().clone())
            }
            Some(Numeric::Int) => {
                let column = match column.data_type() {
                    DataType::Int64 => column.clone(),
                    _ => cast(column, &DataType::Int64)?,
                };
                Self::Int(column.as_primitive::<Int64Type>().clone())
            }
            None if matches!(
                spec.function,
                AggregateFunction::First
                    | AggregateFunction::Last
                    | AggregateFunction::DistinctCount
            ) =>
            {
                let column = match column.data_type() {
                    DataType::Utf8 => column.clone(),
                    _ => cast(column, &DataType::Utf8)?,
                };
                Self::Text(column.as_string::<i32>().clone())
            }
            None => Self::Other(column.clone()),
        })
    }
}

/// The running state of one aggregate over every group of one window.
#[derive(Clone, Debug)]
pub(crate) enum Accumulator {
    /// `count()` and `count(field)`.
    Count(Vec<i64>),
    /// `sum` and `mean`: running sum and number of values.
    Sum { sum: Vec<f64>, n: Vec<i64> },
    /// `min` / `max` of floats; `seen` tells a group with values from one without.
    Float { extreme: Vec<f64>, seen: Vec<bool> },
    /// `min` / `max` of integers.
    Int { extreme: Vec<i64>, seen: Vec<bool> },
    /// `first`, `last`, `min_at`, `max_at`.
    ByTime(ByTime),
    /// `stddev`, `variance`, `stddev_pop`, `var_pop`.
    Moments(Moments),
    /// `median`, `quantile`.
    Quantiles(Quantiles),
    /// `distinct_count`.
    Distinct(Distinct),
    /// `rate`, `increase`, `time_weighted_mean`, `integral`.
    Series(Series),
}

/// Calls `f(group, row, value)` for every selected row whose value is neither null nor NaN.
#[inline]
fn each_float(
    values: &Float64Array,
    rows: Selection<'_>,
    gids: &[u32],
    mut f: impl FnMut(usize, usize, f64),
) {
    let raw = values.values();
    match values.nulls().filter(|n| n.null_count() > 0) {
        None => rows.for_each(|k, row| {
            let x = raw[row];
            if !x.is_nan() {
                f(gids[k] as usize, row, x);
            }
        }),
        Some(nulls) => rows.for_each(|k, row| {
            let x = raw[row];
            if nulls.is_valid(row) && !x.is_nan() {
                f(gids[k] as usize, row, x);
            }
        }),
    }
}

/// Calls `f(group, row, value)` for every selected row whose value is not null.
#[inline]
fn each_int(
    values: &Int64Array,
    rows: Selection<'_>,
    gids: &[u32],
    mut f: impl FnMut(usize, usize, i64),
) {
    let raw = values.values();
    match values.nulls().filter(|n| n.null_count() > 0) {
        None => rows.for_each(|k, row| f(gids[k] as usize, row, raw[row])),
        Some(nulls) => rows.for_each(|k, row| {
            if nulls.is_valid(row) {
                f(gids[k] as usize, row, raw[row]);
            }
        }),
    }
}

/// Calls `f(group, row, value)` for every selected row whose string is not null.
#[inline]
fn each_text(
    values: &StringArray,
    rows: Selection<'_>,
    gids: &[u32],
    mut f: impl FnMut(usize, usize, &str),
) {
    match values.nulls().filter(|n| n.null_count() > 0) {
        None => rows.for_each(|k, row| f(gids[k] as usize, row, values.value(row))),
        Some(nulls) => rows.for_each(|k, row| {
            if nulls.is_valid(row) {
                f(gids[k] as usize, row, values.value(row));
            }
        }),
    }
}

fn each_valid(
    nulls: Option<&NullBuffer>,
    rows: Selection<'_>,
    gids: &[u32],
    mut f: impl FnMut(usize),
) {
    match nulls.filter(|n| n.null_count() > 0) {
        None => rows.for_each(|k, _| f(gids[k] as usize)),
        Some(nulls) => rows.for_each(|k, row| {
            if nulls.is_valid(row) {
                f(gids[k] as usize);
            }
        }),
    }
}

impl Accumulator {
    /// Empty state for `spec`.
    pub(crate) fn new(spec: &AggregateSpec) -> Self {
        use AggregateFunction::*;
        match (spec.function, spec.numeric) {
            (Count | CountIf, _) => Self::Count(Vec::new()),
            (First | Last | MinAt | MaxAt, _) => Self::ByTime(ByTime::new(spec)),
            (Stddev | Variance | StddevPop | VarPop, _) => Self::Moments(Moments::default()),
            (Median | Quantile, _) => Self::Quantiles(Quantiles::new()),
            (DistinctCount, _) => Self::Distinct(Distinct::new()),
            (Rate | Increase | TimeWeightedMean | Integral, _) => Self::Series(Series::default()),
            (AggregateFunction::Sum | AggregateFunction::Mean, _) => Self::Sum {
                sum: Vec::new(),
                n: Vec::new(),
            },
            (_, Some(Numeric::Int)) => Self::Int {
                extreme: Vec::new(),
                seen: Vec::new(),
            },
            _ => Self::Float {
                extreme: Vec::new(),
                seen: Vec::new(),
            },
        }
    }

    /// Makes room for `groups` groups.
    pub(crate) fn grow(&mut self, spec: &AggregateSpec, groups: usize) {
        let is_min = spec.function == AggregateFunction::Min;
        match self {
            Self::Count(n) => n.resize(groups, 0),
            Self::Sum { sum, n } => {
                sum.resize(groups, 0.0);
                n.resize(groups, 0);
            }
            Self::Float { extreme, seen } => {
                extreme.resize(
                    groups,
                    if is_min {
                        f64::INFINITY
                    } else {
                        f64::NEG_INFINITY
                    },
                );
                seen.resize(groups, false);
            }
            Self::Int { extreme, seen } => {
                extreme.resize(groups, if is_min { i64::MAX } else { i64::MIN });
                seen.resize(groups, false);
            }
            Self::ByTime(state) => state.grow(groups),
            Self::Moments(state) => state.grow(groups),
            Self::Quantiles(state) => state.grow(groups),
            Self::Distinct(state) => state.grow(groups),
            Self::Series(state) => state.grow(groups),
        }
    }

    /// Clears group `group` back to its empty state, as if it had seen no row (session and
    /// count windows reuse a key's group for its next window).
    pub(crate) fn reset(&mut self, spec: &AggregateSpec, group: usize) {
        let is_min = spec.function == AggregateFunction::Min;
        match self {
            Self::Count(n) => n[group] = 0,
            Self::Sum { sum, n } => {
                sum[group] = 0.0;
                n[group] = 0;
            }
            Self::Float { extreme, seen } => {
                extreme[group] = if is_min {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                };
                seen[group] = false;
            }
            Self::Int { extreme, seen } => {
                extreme[group] = if is_min { i64::MAX } else { i64::MIN };
                seen[group] = false;
            }
            Self::ByTime(state) => state.reset(group),
            Self::Moments(state) => state.reset(group),
            Self::Quantiles(state) => state.reset(group),
            Self::Distinct(state) => state.reset(group),
            Self::Series(state) => state.reset(group),
        }
    }

    /// Adds the selected rows of one batch; `gids[k]` is the group of the `k`-th selected row
    /// and `times[row]` the event time (ms since the epoch) of every row of the batch.
    pub(crate) fn update(
        &mut self,
        spec: &AggregateSpec,
        values: &Values,
        times: &[i64],
        rows: Selection<'_>,
        gids: &[u32],
    ) {
        let is_min = spec.function == AggregateFunction::Min;
        match (self, values) {
            (Self::ByTime(state), values) => state.update(values, times, rows, gids),
            (Self::Moments(state), values) => state.update(values, rows, gids),
            (Self::Quantiles(state), values) => state.update(values, rows, gids),
            (Self::Distinct(state), values) => state.update(values, rows, gids),
            (Self::Series(state), values) => state.update(values, times, rows, gids),
            (Self::Count(n), Values::None) => {
                for &g in gids {
                    n[g as usize] += 1;
                }
            }
            (Self::Count(n), Values::Float(values)) => {
                each_float(values, rows, gids, |g, _, _| n[g] += 1)
            }
            (Self::Count(n), Values::Int(values)) => {
                each_valid(values.nulls(), rows, gids, |g| n[g] += 1)
            }
            (Self::Count(n), Values::Other(values)) => {
                each_valid(values.logical_nulls().as_ref(), rows, gids, |g| n[g] += 1);
            }
            (Self::Count(n), Values::Bool(condition)) => {
                // A null condition is not true: only set bits of valid rows count.
                let truth = condition.values();
                match condition.nulls().filter(|v| v.null_count() > 0) {
                    None => rows.for_each(|k, row| {
                        if truth.value(row) {
                            n[gids[k] as usize] += 1;
                        }
                    }),
                    Some(valid) => rows.for_each(|k, row| {
                        if valid.is_valid(row) && truth.value(row) {
                            n[gids[k] as usize] += 1;
                        }
                    }),
                }
            }
            (Self::Sum { sum, n }, Values::Float(values)) => {
                each_float(values, rows, gids, |g, _, x| {
                    sum[g] += x;
                    n[g] += 1;
                })
            }
            (Self::Sum { sum, n }, Values::Int(values)) => {
                each_int(values, rows, gids, |g, _, x| {
                    sum[g] += x as f64;
                    n[g] += 1;
                })
            }
            (Self::Float { extreme, seen }, Values::Float(values)) => {
                if is_min {
                    each_float(values, rows, gids, |g, _, x| {
                        extreme[g] = extreme[g].min(x);
                        seen[g] = true;
                    });
                } else {
                    each_float(values, rows, gids, |g, _, x| {
                        extreme[g] = extreme[g].max(x);
                        seen[g] = true;
                    });
                }
            }
            (Self::Int { extreme, seen }, Values::Int(values)) => {
                if is_min {
                    each_int(values, rows, gids, |g, _, x| {
                        extreme[g] = extreme[g].min(x);
                        seen[g] = true;
                    });
                } else {
                    each_int(values, rows, gids, |g, _, x| {
                        extreme[g] = extreme[g].max(x);
                        seen[g] = true;
                    });
                }
            }
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    /// The output column, one row per group in `order`.
    pub(crate) fn finish(
        &self,
        spec: &AggregateSpec,
        order: &[u32],
    ) -> Result<ArrayRef, ArrowError> {
        let array: ArrayRef = match self {
            Self::Count(n) => Arc::new(Int64Array::from_iter_values(
                order.iter().map(|&g| n[g as usize]),
            )),
            Self::Sum { sum, n } => {
                let mean = spec.function == AggregateFunction::Mean;
                Arc::new(Float64Array::from_iter(order.iter().map(|&g| {
                    let (s, c) = (sum[g as usize], n[g as usize]);
                    (c > 0).then(|| if mean { s / c as f64 } else { s })
                })))
            }
            Self::Float { extreme, seen } => Arc::new(PrimitiveArray::<Float64Type>::from_iter(
                order
                    .iter()
                    .map(|&g| seen[g as usize].then(|| extreme[g as usize])),
            )),
            Self::Int { extreme, seen } => Arc::new(PrimitiveArray::<Int64Type>::from_iter(
                order
                    .iter()
                    .map(|&g| seen[g as usize].then(|| extreme[g as usize])),
            )),
            Self::ByTime(state) => state.finish(order),
            Self::Moments(state) => state.finish(spec.function, order),
            Self::Quantiles(state) => state.finish(spec.level, order),
            Self::Distinct(state) => state.finish(order),
            Self::Series(state) => state.finish(spec, order),
        };
        if array.data_type() == &spec.output_type {
            Ok(array)
        } else {
            // min, max, first and last of a narrower input type (or of bools, or of other
            // strings): every value came from that type, so the cast back is exact.
            cast(&array, &spec.output_type)
        }
    }

    /// Bytes held beyond one fixed slot per group: strings, sketch bins, distinct sets and
    /// buffered samples, in constant time (each family keeps its count up to date). For the
    /// state-size estimate, which matters most for `rate`, `increase`, `time_weighted_mean`
    /// and `integral`: they hold every sample of a window.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::ByTime(state) => state.heap_bytes(),
            Self::Quantiles(state) => state.heap_bytes(),
            Self::Distinct(state) => state.heap_bytes(),
            Self::Series(state) => state.heap_bytes(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::Int32Array;
    use edgeflow_engine::schema::timestamp_type;

    pub(super) fn spec(
        function: AggregateFunction,
        numeric: Option<Numeric>,
        output_type: DataType,
    ) -> AggregateSpec {
        AggregateSpec::new(function, Some(0), None, numeric, output_type)
    }

    /// Runs `spec` over batches of `(column, event times, group of each row)` and finishes
    /// groups `0..groups`.
    pub(super) fn run_batches(
        spec: &AggregateSpec,
        batches: &[(ArrayRef, Vec<i64>, Vec<u32>)],
        groups: usize,
    ) -> ArrayRef {
        let mut acc = Accumulator::new(spec);
        acc.grow(spec, groups);
        for (column, times, gids) in batches {
            let values = Values::prepare(spec, Some(column)).unwrap();
            acc.update(spec, &values, times, Selection::All(column.len()), gids);
        }
        acc.finish(spec, &(0..groups as u32).collect::<Vec<_>>())
            .unwrap()
    }

    /// The float64 values of `array`.
    pub(super) fn f64s(array: &ArrayRef) -> Vec<Option<f64>> {
        array.as_primitive::<Float64Type>().iter().collect()
    }

    fn run(spec: &AggregateSpec, column: ArrayRef, gids: &[u32], groups: usize) -> ArrayRef {
        let values = Values::prepare(spec, Some(&column)).unwrap();
        let mut acc = Accumulator::new(spec);
        acc.grow(spec, groups);
        acc.update(
            spec,
            &values,
            &vec![0; column.len()],
            Selection::All(column.len()),
            gids,
        );
        acc.finish(spec, &(0..groups as u32).collect::<Vec<_>>())
            .unwrap()
    }

    fn floats() -> ArrayRef {
        Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(4.0),
            None,
            Some(-2.0),
        ]))
    }

    const GIDS: [u32; 6] = [0, 0, 0, 0, 1, 2];

    #[test]
    fn float_aggregates_skip_null_and_nan() {
        let f = Some(Numeric::Float);
        let sum = run(
            &spec(AggregateFunction::Sum, f, DataType::Float64),
            floats(),
            &GIDS,
            3,
        );
        assert_eq!(
            sum.as_primitive::<Float64Type>().iter().collect::<Vec<_>>(),
            [Some(5.0), None, Some(-2.0)]
        );
        let mean = run(
            &spec(AggregateFunction::Mean, f, DataType::Float64),
            floats(),
            &GIDS,
            3,
        );
        assert_eq!(
            mean.as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(2.5), None, Some(-2.0)]
        );
        let min = run(
            &spec(AggregateFunction::Min, f, DataType::Float64),
            floats(),
            &GIDS,
            3,
        );
        assert_eq!(
            min.as_primitive::<Float64Type>().iter().collect::<Vec<_>>(),
            [Some(1.0), None, Some(-2.0)]
        );
        let max = run(
            &spec(AggregateFunction::Max, f, DataType::Float64),
            floats(),
            &GIDS,
            3,
        );
        assert_eq!(
            max.as_primitive::<Float64Type>().iter().collect::<Vec<_>>(),
            [Some(4.0), None, Some(-2.0)]
        );
        let count = run(
            &spec(AggregateFunction::Count, f, DataType::Int64),
            floats(),
            &GIDS,
            3,
        );
        assert_eq!(
            count.as_primitive::<Int64Type>().values().to_vec(),
            [2, 0, 1]
        );
    }

    #[test]
    fn int_min_max_keep_the_input_type_and_sum_is_float() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![Some(5), None, Some(-7), Some(9)]));
        let gids = [0, 0, 0, 1];
        let i = Some(Numeric::Int);
        let min = run(
            &spec(AggregateFunction::Min, i, DataType::Int32),
            ints.clone(),
            &gids,
            2,
        );
        assert_eq!(min.data_type(), &DataType::Int32);
        assert_eq!(
            min.as_primitive::<edgeflow_engine::arrow::datatypes::Int32Type>()
                .values()
                .to_vec(),
            [-7, 9]
        );
        let max = run(
            &spec(AggregateFunction::Max, i, DataType::Int32),
            ints.clone(),
            &gids,
            2,
        );
        assert_eq!(
            max.as_primitive::<edgeflow_engine::arrow::datatypes::Int32Type>()
                .values()
                .to_vec(),
            [5, 9]
        );
        let sum = run(
            &spec(AggregateFunction::Sum, i, DataType::Float64),
            ints.clone(),
            &gids,
            2,
        );
        assert_eq!(
            sum.as_primitive::<Float64Type>().values().to_vec(),
            [-2.0, 9.0]
        );
        let count = run(
            &spec(AggregateFunction::Count, i, DataType::Int64),
            ints,
            &gids,
            2,
        );
        assert_eq!(count.as_primitive::<Int64Type>().values().to_vec(), [2, 1]);
    }

    #[test]
    fn reset_groups_are_empty_again() {
        let f = Some(Numeric::Float);
        for function in [
            AggregateFunction::Count,
            AggregateFunction::Sum,
            AggregateFunction::Min,
            AggregateFunction::Max,
        ] {
            let output = if function == AggregateFunction::Count {
                DataType::Int64
            } else {
                DataType::Float64
            };
            let spec = spec(function, f, output);
            let column = floats();
            let values = Values::prepare(&spec, Some(&column)).unwrap();
            let mut acc = Accumulator::new(&spec);
            acc.grow(&spec, 3);
            let times = [0; 6];
            acc.update(&spec, &values, &times, Selection::All(6), &GIDS);
            acc.reset(&spec, 0);
            let fresh = {
                let mut fresh = Accumulator::new(&spec);
                fresh.grow(&spec, 1);
                fresh.finish(&spec, &[0]).unwrap()
            };
            assert_eq!(acc.finish(&spec, &[0]).unwrap().as_ref(), fresh.as_ref());
            // The reset group accumulates again from nothing.
            acc.update(&spec, &values, &times, Selection::All(6), &GIDS);
            let again = acc.finish(&spec, &[0]).unwrap();
            let once = run(&spec, floats(), &GIDS, 3);
            assert_eq!(again.as_ref(), once.slice(0, 1).as_ref());
        }
    }

    #[test]
    fn count_rows_and_count_of_strings() {
        let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("c")]));
        let count = run(
            &spec(AggregateFunction::Count, None, DataType::Int64),
            strings,
            &[0, 0, 1],
            2,
        );
        assert_eq!(count.as_primitive::<Int64Type>().values().to_vec(), [1, 1]);

        let rows = AggregateSpec::new(AggregateFunction::Count, None, None, None, DataType::Int64);
        let mut acc = Accumulator::new(&rows);
        acc.grow(&rows, 2);
        acc.update(
            &rows,
            &Values::None,
            &[0; 10],
            Selection::Rows(&[7, 3, 9]),
            &[1, 1, 0],
        );
        let out = acc.finish(&rows, &[1, 0]).unwrap();
        assert_eq!(out.as_primitive::<Int64Type>().values().to_vec(), [2, 1]);
    }

    #[test]
    fn count_if_counts_true_only() {
        let condition: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            Some(true),
        ]));
        let spec = AggregateSpec::new(
            AggregateFunction::CountIf,
            None,
            None,
            None,
            DataType::Int64,
        );
        let count = run(&spec, condition.clone(), &[0, 0, 0, 0, 1], 3);
        assert_eq!(
            count.as_primitive::<Int64Type>().values().to_vec(),
            [2, 1, 0]
        );
        let values = Values::prepare(&spec, Some(&condition)).unwrap();
        let mut acc = Accumulator::new(&spec);
        acc.grow(&spec, 1);
        acc.update(
            &spec,
            &values,
            &[0; 5],
            Selection::Rows(&[2, 3, 1]),
            &[0, 0, 0],
        );
        let out = acc.finish(&spec, &[0]).unwrap();
        assert_eq!(out.as_primitive::<Int64Type>().values().to_vec(), [1]);
    }

    /// Every function's spec over float values, with its output type.
    fn every_float_spec() -> Vec<AggregateSpec> {
        AggregateFunction::ALL
            .iter()
            .filter(|(_, f)| *f != AggregateFunction::CountIf)
            .map(|&(_, function)| {
                use AggregateFunction::*;
                let output = match function {
                    Count | DistinctCount => DataType::Int64,
                    MinAt | MaxAt => timestamp_type(),
                    _ => DataType::Float64,
                };
                let mut spec = spec(function, Some(Numeric::Float), output);
                spec.level = 0.9;
                spec
            })
            .collect()
    }

    #[test]
    fn every_function_resets_a_group_to_empty() {
        let mut specs = every_float_spec();
        for function in [
            AggregateFunction::First,
            AggregateFunction::Last,
            AggregateFunction::DistinctCount,
        ] {
            let output = match function {
                AggregateFunction::DistinctCount => DataType::Int64,
                _ => DataType::Utf8,
            };
            specs.push(spec(function, None, output));
        }
        for spec in specs {
            let column: ArrayRef = if spec.numeric.is_some() {
                Arc::new(Float64Array::from(vec![3.0, 1.0, 4.0, 1.0, 5.0, 9.0]))
            } else {
                Arc::new(StringArray::from(vec!["c", "a", "d", "a", "e", "i"]))
            };
            let times = vec![30, 10, 40, 10, 50, 90];
            let gids = vec![0, 0, 0, 1, 1, 0];
            let batch = (column, times, gids);
            let once = run_batches(&spec, std::slice::from_ref(&batch), 2);

            let mut acc = Accumulator::new(&spec);
            acc.grow(&spec, 2);
            let values = Values::prepare(&spec, Some(&batch.0)).unwrap();
            acc.update(&spec, &values, &batch.1, Selection::All(6), &batch.2);
            acc.reset(&spec, 0);
            let empty = {
                let mut fresh = Accumulator::new(&spec);
                fresh.grow(&spec, 1);
                fresh.finish(&spec, &[0]).unwrap()
            };
            let name = spec.function.name();
            assert_eq!(
                acc.finish(&spec, &[0]).unwrap().as_ref(),
                empty.as_ref(),
                "{name}"
            );
            // The other group is untouched, and the reset one accumulates again from nothing.
            assert_eq!(
                acc.finish(&spec, &[1]).unwrap().as_ref(),
                once.slice(1, 1).as_ref(),
                "{name}"
            );
            acc.update(
                &spec,
                &values,
                &batch.1,
                Selection::Rows(&[0, 1, 2, 5]),
                &[0, 0, 0, 0],
            );
            assert_eq!(
                acc.finish(&spec, &[0]).unwrap().as_ref(),
                once.slice(0, 1).as_ref(),
                "{name}"
            );
            if matches!(
                spec.function,
                AggregateFunction::Count | AggregateFunction::DistinctCount
            ) {
                assert_eq!(empty.as_primitive::<Int64Type>().value(0), 0);
            } else {
                assert!(empty.is_null(0), "{name} of nothing is null");
            }
        }
    }

    #[test]
    fn new_functions_skip_null_and_nan() {
        for spec in every_float_spec() {
            let with_gaps: ArrayRef = Arc::new(Float64Array::from(vec![
                Some(2.0),
                None,
                Some(f64::NAN),
                Some(6.0),
                Some(5.0),
            ]));
            let clean: ArrayRef = Arc::new(Float64Array::from(vec![2.0, 6.0, 5.0]));
            let gapped = run_batches(
                &spec,
                &[(with_gaps, vec![1000, 2000, 3000, 4000, 5000], vec![0; 5])],
                1,
            );
            let plain = run_batches(&spec, &[(clean, vec![1000, 4000, 5000], vec![0; 3])], 1);
            assert_eq!(gapped.as_ref(), plain.as_ref(), "{}", spec.function);
        }
    }

    #[test]
    fn heap_bytes_follow_growth_and_resets() {
        let mut specs = every_float_spec();
        specs.push(spec(AggregateFunction::Last, None, DataType::Utf8));
        for spec in specs {
            let n = 2_000;
            let column: ArrayRef = if spec.numeric.is_some() {
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 * 1.5),
                ))
            } else {
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| "x".repeat(i % 50)),
                ))
            };
            let times: Vec<i64> = (0..n as i64).collect();
            let gids: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
            let mut acc = Accumulator::new(&spec);
            acc.grow(&spec, 2);
            let values = Values::prepare(&spec, Some(&column)).unwrap();
            acc.update(&spec, &values, &times, Selection::All(n), &gids);
            let held = acc.heap_bytes();
            let name = spec.function.name();
            match spec.function {
                AggregateFunction::Rate
                | AggregateFunction::Increase
                | AggregateFunction::TimeWeightedMean
                | AggregateFunction::Integral => assert!(held >= n * 16, "{name}: {held}"),
                AggregateFunction::Median
                | AggregateFunction::Quantile
                | AggregateFunction::DistinctCount => assert!(held > 0, "{name}: {held}"),
                // Strings live on the heap; numbers in the fixed slots.
                AggregateFunction::Last if spec.numeric.is_none() => {
                    assert!(held > 0, "{name}: {held}");
                }
                _ => assert_eq!(held, 0, "{name}"),
            }
            acc.reset(&spec, 0);
            assert!(acc.heap_bytes() < held || held == 0, "{name}");
            acc.reset(&spec, 1);
            assert_eq!(acc.heap_bytes(), 0, "{name}: nothing is held after resets");
        }
    }
}
