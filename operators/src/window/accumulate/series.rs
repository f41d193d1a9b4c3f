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

/// The samples of every group of one window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    samples: Vec<Vec<(i64, f64)>>,
    /// Whether a group's samples arrived in event-time order (so need no sort).
    ordered: Vec<bool>,
}

impl Series {
    pub(super) fn grow(&mut self, groups: usize) {
        self.samples.resize_with(groups, Vec::new);
        self.ordered.resize(groups, true);
    }

    pub(super) fn reset(&mut self, group: usize) {
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
        let (samples, ordered) = (&mut self.samples, &mut self.ordered);
        let mut add = |g: usize, t: i64, x: f64| {
            let group = &mut samples[g];
            if group.last().is_some_and(|&(last, _)| last > t) {
                ordered[g] = false;
            }
            group.push((t, x));
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

    pub(super) fn heap_bytes(&self) -> usize {
        self.samples.iter().map(|s| s.capacity() * 16).sum()
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
