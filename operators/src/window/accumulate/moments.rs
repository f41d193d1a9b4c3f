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
