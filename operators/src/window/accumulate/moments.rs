//! `stddev`, `variance` (sample, n − 1) and `stddev_pop`, `var_pop` (population, n): per
//! group, Welford's running count, mean and sum of squared deviations `m2`, updated a value
//! at a time. Unlike the textbook `Σx² − (Σx)²/n`, this does not cancel catastrophically when
//! the values sit far from zero (a temperature in kelvin, a counter near 10⁹), so the result
//! keeps the precision of the deviations themselves.
//!
//! The sample functions are null with fewer than 2 values, the population ones without
//! values.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{ArrayRef, Float64Array};

use super::{Values, each_float, each_int};
use crate::window::Selection;
use crate::window::expr::AggregateFunction;

/// Welford state over every group of one window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Moments {
    n: Vec<i64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    pub(super) fn grow(&mut self, groups: usize) {
        self.n.resize(groups, 0);
        self.mean.resize(groups, 0.0);
        self.m2.resize(groups, 0.0);
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.n[group] = 0;
        self.mean[group] = 0.0;
        self.m2[group] = 0.0;
    }

    pub(super) fn update(&mut self, values: &Values, rows: Selection<'_>, gids: &[u32]) {
        let (n, mean, m2) = (&mut self.n, &mut self.mean, &mut self.m2);
        let mut add = |g: usize, x: f64| {
            n[g] += 1;
            let delta = x - mean[g];
            mean[g] += delta / n[g] as f64;
            m2[g] += delta * (x - mean[g]);
        };
        match values {
            Values::Float(input) => each_float(input, rows, gids, |g, _, x| add(g, x)),
            Values::Int(input) => each_int(input, rows, gids, |g, _, x| add(g, x as f64)),
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, function: AggregateFunction, order: &[u32]) -> ArrayRef {
        let (sample, root) = match function {
            AggregateFunction::Stddev => (true, true),
            AggregateFunction::Variance => (true, false),
            AggregateFunction::StddevPop => (false, true),
            _ => (false, false),
        };
        Arc::new(Float64Array::from_iter(order.iter().map(|&g| {
            let (n, m2) = (self.n[g as usize], self.m2[g as usize]);
            let divisor = if sample { n - 1 } else { n };
            // Rounding can leave m2 a hair below zero for equal values: clamp it.
            let variance = (divisor > 0).then(|| m2.max(0.0) / divisor as f64)?;
            Some(if root { variance.sqrt() } else { variance })
        })))
    }
}

#[cfg(test)]
mod tests {
    use edgeflow_engine::arrow::array::Int64Array;
    use edgeflow_engine::arrow::datatypes::DataType;

    use super::super::tests::{f64s, run_batches, spec};
    use super::*;
    use crate::fields::Numeric;

    fn all_four(
        column: ArrayRef,
        numeric: Numeric,
        gids: Vec<u32>,
        groups: usize,
    ) -> Vec<Vec<Option<f64>>> {
        let times = vec![0; column.len()];
        [
            AggregateFunction::Variance,
            AggregateFunction::Stddev,
            AggregateFunction::VarPop,
            AggregateFunction::StddevPop,
        ]
        .into_iter()
        .map(|function| {
            let out = run_batches(
                &spec(function, Some(numeric), DataType::Float64),
                &[(column.clone(), times.clone(), gids.clone())],
                groups,
            );
            f64s(&out)
        })
        .collect()
    }

    #[test]
    fn sample_and_population_and_too_few_values() {
        // Group 0: 4, 7, 13, 16 (mean 10, squared deviations 90); group 1: one value;
        // group 2: none.
        let column: ArrayRef = Arc::new(Int64Array::from(vec![4, 7, 42, 13, 16]));
        let out = all_four(column, Numeric::Int, vec![0, 0, 1, 0, 0], 3);
        assert_eq!(out[0], [Some(30.0), None, None]);
        assert_eq!(out[1], [Some(30f64.sqrt()), None, None]);
        assert_eq!(out[2], [Some(22.5), Some(0.0), None]);
        assert_eq!(out[3], [Some(22.5f64.sqrt()), Some(0.0), None]);
    }

    #[test]
    fn values_far_from_zero_keep_their_precision() {
        // The naive Σx² − (Σx)²/n loses every digit here (x² ≈ 10¹⁸ > 2⁵³).
        let column: ArrayRef = Arc::new(Float64Array::from(vec![
            1e9 + 4.0,
            1e9 + 7.0,
            1e9 + 13.0,
            1e9 + 16.0,
        ]));
        let out = all_four(column, Numeric::Float, vec![0; 4], 1);
        assert_eq!(out[0], [Some(30.0)]);
        assert_eq!(out[2], [Some(22.5)]);
        // Equal values give exactly zero, never a NaN from a negative rounding residue.
        let column: ArrayRef = Arc::new(Float64Array::from(vec![0.1; 7]));
        let out = all_four(column, Numeric::Float, vec![0; 7], 1);
        assert_eq!(out[1], [Some(0.0)]);
    }
}
