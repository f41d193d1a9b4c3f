//! `rate`, `increase`, `time_weighted_mean` and `integral`: functions of the samples in
//! event-time order.
//!
//! # Semantics
//!
//! A group's samples `(t₀, v₀) … (tₙ, vₙ)` are its non-null, non-NaN values sorted by event
//! time, rows with equal times in arrival order.
//!
//! * `increase(x)`: the sum over consecutive samples of `vᵢ₊₁ − vᵢ`, or of `vᵢ₊₁` when the
//!   value dropped (a counter reset, which restarts from 0, as in Prometheus). Null with fewer
//!   than 2 samples.
//! * `rate(x)`: `increase(x)` per second over the span of the samples, `(tₙ − t₀)/1000`.
//!   Unlike Prometheus, there is no extrapolation to the window's bounds: the rate is that of
//!   the samples seen. Null with fewer than 2 samples or when they share one time.
//! * `integral(x[, 'step' | 'linear'])`: in value·seconds from `t₀` to `tₙ`: with `step`
//!   (the default) each value holds until the next sample, `Σ vᵢ·(tᵢ₊₁ − tᵢ)`; with `linear`,
//!   the trapezoid rule `Σ (vᵢ + vᵢ₊₁)/2·(tᵢ₊₁ − tᵢ)`. Null without samples, 0 with one.
//!   Nothing is assumed before the first or after the last sample of the window.
//! * `time_weighted_mean(x[, …])`: the integral divided by its span `(tₙ − t₀)/1000`. Null
//!   when the span is zero (fewer than 2 distinct times).
//!
//! # Out-of-order rows and memory
//!
//! Rows reach a window out of event-time order (up to the watermark lag, and for a row
//! behind the watermark, anywhere in a window that has not ended). These functions are not
//! decomposable: a sample arriving between two others changes both neighbouring segments. So
//! a group keeps every sample as a `(time, value)` pair (16 bytes) until the window is
//! emitted, and sorts them then (skipped when they arrived in order, the common case). The
//! state of these four functions grows with the rows of a window and key, not only with the
//! keys: a key reporting every second in a one-hour window holds 3,600 samples (56 KiB).
//! Folding the samples older than a point into a running summary would bound it, but only
//! behind the oldest time a row of the window can still arrive with, which for a window that
//! has not ended is its start: the window operator accepts a row behind the watermark as long
//! as its window is open, so no sample of an open window is final.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{ArrayRef, Float64Array};

use super::{Values, each_float, each_int};
use crate::window::Selection;
use crate::window::expr::{AggregateFunction, Interpolation};
use crate::window::plan_aggregate::AggregateSpec;

/// Bytes of one buffered sample.
const SAMPLE_BYTES: usize = std::mem::size_of::<(i64, f64)>();

/// The samples of every group of one window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    samples: Vec<Vec<(i64, f64)>>,
    /// Whether a group's samples arrived in event-time order (so need no sort).
    ordered: Vec<bool>,
    /// Bytes allocated for samples over every group, kept up to date as they grow.
    bytes: usize,
}

impl Series {
    pub(super) fn grow(&mut self, groups: usize) {
        self.samples.resize_with(groups, Vec::new);
        self.ordered.resize(groups, true);
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.bytes -= self.samples[group].capacity() * SAMPLE_BYTES;
        self.samples[group] = Vec::new();
        self.ordered[group] = true;
    }

    pub(super) fn update(
        &mut self,
        values: &Values,
        times: &[i64],
        rows: Selection<'_>,
        gids: &[u32],
    ) {
        let (samples, ordered, bytes) = (&mut self.samples, &mut self.ordered, &mut self.bytes);
        let mut add = |g: usize, t: i64, x: f64| {
            let group = &mut samples[g];
            if group.last().is_some_and(|&(last, _)| last > t) {
                ordered[g] = false;
            }
            let before = group.capacity();
            group.push((t, x));
            *bytes += (group.capacity() - before) * SAMPLE_BYTES;
        };
        match values {
            Values::Float(input) => {
                each_float(input, rows, gids, |g, row, x| add(g, times[row], x))
            }
            Values::Int(input) => {
                each_int(input, rows, gids, |g, row, x| add(g, times[row], x as f64));
            }
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, spec: &AggregateSpec, order: &[u32]) -> ArrayRef {
        let mut scratch = Vec::new();
        let function = spec.function;
        let interpolation = spec.interpolation;
        Arc::new(Float64Array::from_iter(order.iter().map(|&g| {
            let g = g as usize;
            let samples = if self.ordered[g] {
                self.samples[g].as_slice()
            } else {
                scratch.clear();
                scratch.extend_from_slice(&self.samples[g]);
                // Stable: equal times keep their arrival order.
                scratch.sort_by_key(|&(t, _)| t);
                scratch.as_slice()
            };
            evaluate(function, interpolation, samples)
        })))
    }

    /// Bytes of the buffered samples (their allocations), in constant time.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

/// The function over samples sorted by time.
pub(crate) fn evaluate(
    function: AggregateFunction,
    interpolation: Interpolation,
    samples: &[(i64, f64)],
) -> Option<f64> {
    let span = || Some((samples.last()?.0 - samples.first()?.0) as f64 / 1000.0);
    match function {
        AggregateFunction::Increase => increase(samples),
        AggregateFunction::Rate => {
            let span = span()?;
            increase(samples).filter(|_| span > 0.0).map(|i| i / span)
        }
        AggregateFunction::Integral => integral(samples, interpolation),
        _ => {
            let span = span()?;
            integral(samples, interpolation)
                .filter(|_| span > 0.0)
                .map(|i| i / span)
        }
    }
}

/// Prometheus's increase without extrapolation: a drop is a reset to 0.
fn increase(samples: &[(i64, f64)]) -> Option<f64> {
    (samples.len() >= 2).then(|| {
        samples
            .windows(2)
            .map(|pair| {
                let (before, after) = (pair[0].1, pair[1].1);
                if after >= before {
                    after - before
                } else {
                    after
                }
            })
            .sum()
    })
}

/// Integral in value·seconds over `[t₀, tₙ]`.
fn integral(samples: &[(i64, f64)], interpolation: Interpolation) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let ms = match interpolation {
        Interpolation::Step => samples
            .windows(2)
            .map(|p| p[0].1 * (p[1].0 - p[0].0) as f64)
            .sum::<f64>(),
        Interpolation::Linear => samples
            .windows(2)
            .map(|p| (p[0].1 + p[1].1) / 2.0 * (p[1].0 - p[0].0) as f64)
            .sum::<f64>(),
    };
    Some(ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use edgeflow_engine::arrow::array::Int64Array;
    use edgeflow_engine::arrow::datatypes::DataType;

    use super::super::tests::{f64s, run_batches, spec};
    use super::*;
    use crate::fields::Numeric;

    fn run(
        function: AggregateFunction,
        interpolation: Interpolation,
        batches: &[(ArrayRef, Vec<i64>, Vec<u32>)],
        groups: usize,
    ) -> Vec<Option<f64>> {
        let mut spec = spec(function, Some(Numeric::Float), DataType::Float64);
        spec.interpolation = interpolation;
        f64s(&run_batches(&spec, batches, groups))
    }

    fn floats(values: &[f64]) -> ArrayRef {
        Arc::new(Float64Array::from(values.to_vec()))
    }

    /// A counter sampled every 10 s that resets between 30 s and 40 s, delivered out of
    /// order in two batches: (0, 100), (10, 110), (20, 130), (30, 160), (40, 5), (50, 25).
    fn counter() -> Vec<(ArrayRef, Vec<i64>, Vec<u32>)> {
        vec![
            (
                floats(&[110.0, 160.0, 5.0]),
                vec![10_000, 30_000, 40_000],
                vec![0; 3],
            ),
            (
                floats(&[100.0, 25.0, 130.0]),
                vec![0, 50_000, 20_000],
                vec![0; 3],
            ),
        ]
    }

    #[test]
    fn increase_and_rate_handle_resets_and_disorder() {
        use AggregateFunction::*;
        // 10 + 20 + 30, then the reset counts 5 (from 0), then 20.
        let step = Interpolation::Step;
        assert_eq!(run(Increase, step, &counter(), 1), [Some(85.0)]);
        assert_eq!(run(Rate, step, &counter(), 1), [Some(85.0 / 50.0)]);
        // In order, the same.
        let sorted = vec![(
            floats(&[100.0, 110.0, 130.0, 160.0, 5.0, 25.0]),
            vec![0, 10_000, 20_000, 30_000, 40_000, 50_000],
            vec![0; 6],
        )];
        assert_eq!(run(Increase, step, &sorted, 1), [Some(85.0)]);
    }

    #[test]
    fn too_few_samples_give_null() {
        use AggregateFunction::*;
        let step = Interpolation::Step;
        // Group 0: one sample; group 1: two samples at one time; group 2: none.
        let batches = vec![(floats(&[7.0, 1.0, 3.0]), vec![500, 900, 900], vec![0, 1, 1])];
        assert_eq!(run(Increase, step, &batches, 3), [None, Some(2.0), None]);
        assert_eq!(run(Rate, step, &batches, 3), [None, None, None]);
        assert_eq!(
            run(Integral, step, &batches, 3),
            [Some(0.0), Some(0.0), None]
        );
        assert_eq!(run(TimeWeightedMean, step, &batches, 3), [None, None, None]);
    }

    #[test]
    fn step_and_linear_integrals() {
        use AggregateFunction::*;
        // 10 for 2 s, 20 for 1 s, then 0 at the end: step 40 value·s over 3 s; linear
        // (10+20)/2·2 + (20+0)/2·1 = 40 as well, so use a last value of 30 instead:
        // linear (10+20)/2·2 + (20+30)/2·1 = 55.
        let batches = vec![
            (floats(&[20.0, 30.0]), vec![2_000, 3_000], vec![0, 0]),
            (floats(&[10.0]), vec![0], vec![0]),
        ];
        let (step, linear) = (Interpolation::Step, Interpolation::Linear);
        assert_eq!(run(Integral, step, &batches, 1), [Some(40.0)]);
        assert_eq!(run(TimeWeightedMean, step, &batches, 1), [Some(40.0 / 3.0)]);
        assert_eq!(run(Integral, linear, &batches, 1), [Some(55.0)]);
        assert_eq!(
            run(TimeWeightedMean, linear, &batches, 1),
            [Some(55.0 / 3.0)]
        );
    }

    #[test]
    fn equal_times_keep_arrival_order() {
        // At 1 s the value goes 4 then 8 (as they arrived), so 8 holds until 2 s.
        let batches = vec![
            (floats(&[0.0, 4.0]), vec![0, 1_000], vec![0, 0]),
            (floats(&[2.0, 8.0]), vec![2_000, 1_000], vec![0, 0]),
        ];
        let step = Interpolation::Step;
        assert_eq!(
            run(AggregateFunction::Integral, step, &batches, 1),
            [Some(8.0)]
        );
        // 0 → 4 (+4), 4 → 8 (+4), 8 → 2 (reset: +2).
        assert_eq!(
            run(AggregateFunction::Increase, step, &batches, 1),
            [Some(10.0)]
        );
    }

    #[test]
    fn int_counters() {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(10)]));
        let mut spec = spec(
            AggregateFunction::Increase,
            Some(Numeric::Int),
            DataType::Float64,
        );
        spec.interpolation = Interpolation::Step;
        let out = run_batches(&spec, &[(column, vec![0, 1, 2], vec![0; 3])], 1);
        assert_eq!(f64s(&out), [Some(7.0)]);
    }
}
