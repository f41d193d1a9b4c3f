//! The rule methods, which need no learnt distribution: `threshold` (fixed limits or limits
//! read from columns of the row), `rate_of_change` (|dv/dt| above a limit) and `flatline` (a
//! stuck sensor: no variation beyond `epsilon` for a duration).
//!
//! Their scores follow the common convention `x / (x + limit)` (see
//! [`super::stats::ratio_score`]): 0.5 exactly at the limit, rising beyond it.

use super::detector::Verdict;
use super::options::{Direction, Limit};
use super::statistical::{humanize_ms, num};
use super::stats::ratio_score;

/// `threshold`: checks a value against its limits (`limits` are the row's limit columns).
pub(crate) fn threshold(
    min: Option<Limit>,
    max: Option<Limit>,
    limits: &[Option<f64>],
    value: f64,
) -> Verdict {
    let resolve = |limit: Option<Limit>| match limit {
        Some(Limit::Value(v)) => Some(v),
        Some(Limit::Column(i)) => limits.get(i).copied().flatten().filter(|v| !v.is_nan()),
        None => None,
    };
    let (lo, hi) = (resolve(min), resolve(max));
    // The distance scale: the width of the normal band, or the limit's own size.
    let scale = match (lo, hi) {
        (Some(lo), Some(hi)) if hi > lo => (hi - lo) / 2.0,
        (Some(l), _) | (_, Some(l)) => l.abs().max(1.0),
        (None, None) => return Verdict::normal(0.0),
    };
    if let Some(hi) = hi
        && value > hi
    {
        let score = ratio_score(scale + (value - hi), scale);
        return Verdict::anomaly(
            score,
            format!("value {} is above the limit {}", num(value), num(hi)),
        );
    }
    if let Some(lo) = lo
        && value < lo
    {
        let score = ratio_score(scale + (lo - value), scale);
        return Verdict::anomaly(
            score,
            format!("value {} is below the limit {}", num(value), num(lo)),
        );
    }
    // Inside: closeness to the nearest limit, 0 at the centre of a band.
    let closeness = match (lo, hi) {
        (Some(lo), Some(hi)) if hi > lo => (value - (lo + hi) / 2.0).abs(),
        (Some(lo), _) => (scale - (value - lo)).max(0.0),
        (_, Some(hi)) => (scale - (hi - value)).max(0.0),
        (None, None) => 0.0,
    };
    Verdict::normal(ratio_score(closeness, scale).min(0.499))
}

/// `rate_of_change` state: the previous row.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateOfChange {
    last: Option<(i64, f64)>,
}

impl RateOfChange {
    pub(crate) fn observe(
        &mut self,
        max_rate: f64,
        direction: Direction,
        time: i64,
        value: f64,
    ) -> Verdict {
        let previous = self.last.replace((time, value));
        let Some((t0, v0)) = previous else {
            return Verdict::normal(0.0);
        };
        // Equal times give no rate: the row is compared with the next one instead.
        if time <= t0 {
            self.last = Some((t0, v0));
            return Verdict::normal(0.0);
        }
        let delta = value - v0;
        if !direction.admits(delta) {
            return Verdict::normal(0.0);
        }
        let seconds = (time - t0) as f64 / 1000.0;
        let rate = delta.abs() / seconds;
        let score = ratio_score(rate, max_rate);
        if rate > max_rate {
            Verdict::anomaly(
                score,
                format!(
                    "value {} by {} in {} ({}/s, limit {}/s)",
                    if delta > 0.0 { "rose" } else { "fell" },
                    num(delta.abs()),
                    humanize_ms(time - t0),
                    num(rate),
                    num(max_rate)
                ),
            )
        } else {
            Verdict::normal(score)
        }
    }
}

/// `flatline` state: the current flat run's start, range and length.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flatline {
    run: Option<Run>,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    start: i64,
    low: f64,
    high: f64,
}

impl Flatline {
    pub(crate) fn observe(
        &mut self,
        epsilon: f64,
        duration_ms: i64,
        time: i64,
        value: f64,
    ) -> Verdict {
        let run = match self.run {
            Some(run) if run.high.max(value) - run.low.min(value) <= epsilon => Run {
                start: run.start,
                low: run.low.min(value),
                high: run.high.max(value),
            },
            _ => Run {
                start: time,
                low: value,
                high: value,
            },
        };
        self.run = Some(run);
        let flat_for = time - run.start;
        let score = ratio_score(flat_for as f64, duration_ms as f64);
        if flat_for >= duration_ms {
            Verdict::anomaly(
                score,
                format!(
                    "value stuck at {} (±{}) for {}",
                    num(value),
                    num(epsilon),
                    humanize_ms(flat_for)
                ),
            )
        } else {
            Verdict::normal(score)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_limits_from_values_and_columns() {
        let v = threshold(None, Some(Limit::Value(80.0)), &[], 93.1);
        assert!(v.anomaly);
        assert_eq!(
            v.reason.as_deref(),
            Some("value 93.1 is above the limit 80")
        );
        assert!(!threshold(None, Some(Limit::Value(80.0)), &[], 79.0).anomaly);
        let column = Some(Limit::Column(0));
        assert!(threshold(column, None, &[Some(10.0)], 9.0).anomaly);
        // A missing limit checks nothing.
        assert!(!threshold(column, None, &[None], -1e9).anomaly);
        let inside = threshold(Some(Limit::Value(0.0)), Some(Limit::Value(10.0)), &[], 9.0);
        let centre = threshold(Some(Limit::Value(0.0)), Some(Limit::Value(10.0)), &[], 5.0);
        assert!(!inside.anomaly && inside.score > centre.score);
    }

    #[test]
    fn rate_of_change_per_second() {
        let mut r = RateOfChange::default();
        assert!(!r.observe(1.0, Direction::Both, 0, 10.0).anomaly);
        assert!(!r.observe(1.0, Direction::Both, 5_000, 14.0).anomaly);
        let v = r.observe(1.0, Direction::Both, 10_000, 26.0);
        assert!(v.anomaly);
        assert_eq!(
            v.reason.as_deref(),
            Some("value rose by 12 in 5s (2.4/s, limit 1/s)")
        );
        assert!(!r.observe(1.0, Direction::Up, 15_000, 0.0).anomaly);
    }

    #[test]
    fn flatline_after_duration() {
        let mut f = Flatline::default();
        let minute = 60_000;
        for i in 0..10 {
            assert!(
                !f.observe(0.01, 10 * minute, i * minute, 5.0).anomaly,
                "row {i}"
            );
        }
        let v = f.observe(0.01, 10 * minute, 10 * minute, 5.005);
        assert!(v.anomaly);
        assert_eq!(
            v.reason.as_deref(),
            Some("value stuck at 5.005 (±0.01) for 10m")
        );
        assert!(!f.observe(0.01, 10 * minute, 11 * minute, 6.0).anomaly);
    }
}
