//! The `change_point` method: a two-sided CUSUM of standardised values against a rolling
//! baseline, for shifts of level (a sustained rise or fall) rather than single spikes.
//!
//! Each value is standardised with the mean and standard deviation of the baseline window
//! (the values before it): `z = (v − mean) / std`. Two sums accumulate evidence of a shift,
//! ignoring `drift` (k) standard deviations per value: `S⁺ = max(0, S⁺ + z − k)` and
//! `S⁻ = max(0, S⁻ − z − k)`. A sum reaching `threshold` (h) is a change point: the sums
//! restart and the baseline is learnt again from the values after the change, so one shift
//! gives one alarm. The score is `S / (S + h)`: 0.5 at the alarm level.

use super::detector::Verdict;
use super::options::{Direction, Span};
use super::statistical::num;
use super::stats::{Rolling, ratio_score, spread_floor};

/// Values a fresh baseline needs before the sums run again.
const RELEARN: usize = 20;

/// `change_point` state: the baseline and the two sums.
#[derive(Clone, Debug)]
pub(crate) struct ChangePoint {
    baseline: Rolling,
    up: f64,
    down: f64,
}

impl ChangePoint {
    pub(crate) fn new(span: &Span) -> Self {
        Self {
            baseline: Rolling::new(span.events, span.age),
            up: 0.0,
            down: 0.0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &mut self,
        span: &Span,
        threshold: f64,
        drift: f64,
        direction: Direction,
        time: i64,
        value: f64,
    ) -> Verdict {
        self.baseline.expire(time, |_| {});
        let needed = RELEARN.min(span.events);
        if self.baseline.len() < needed.max(2) {
            self.baseline.push(time, value);
            return Verdict::normal(0.0);
        }
        let mean = self.baseline.mean();
        let std = spread_floor(self.baseline.std(), mean);
        let z = (value - mean) / std;
        if direction.admits(1.0) {
            self.up = (self.up + z - drift).max(0.0);
        }
        if direction.admits(-1.0) {
            self.down = (self.down - z - drift).max(0.0);
        }
        let sum = self.up.max(self.down);
        let score = ratio_score(sum, threshold);
        self.baseline.push(time, value);
        if sum < threshold {
            return Verdict::normal(score);
        }
        let rising = self.up >= self.down;
        let reason = format!(
            "level shift {}: value {} after a CUSUM of {:.1} (limit {threshold}) against the \
             mean {} ± {} of {}",
            if rising { "up" } else { "down" },
            num(value),
            sum,
            num(mean),
            num(std),
            span.describe()
        );
        // Learn the new level from here on.
        self.up = 0.0;
        self.down = 0.0;
        self.baseline.clear();
        self.baseline.push(time, value);
        Verdict::anomaly(score, reason)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.baseline.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_shift_gives_one_alarm() {
        let span = Span {
            events: 50,
            age: None,
        };
        let mut c = ChangePoint::new(&span);
        let mut alarms = Vec::new();
        for i in 0..300i64 {
            let noise = if i % 2 == 0 { 0.5 } else { -0.5 };
            let level = if i < 150 { 10.0 } else { 13.0 };
            let v = c.observe(&span, 5.0, 0.5, Direction::Both, i, level + noise);
            if v.anomaly {
                alarms.push((i, v.reason.unwrap_or_default()));
            }
        }
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!((150..155).contains(&alarms[0].0), "{alarms:?}");
        assert!(alarms[0].1.starts_with("level shift up"), "{alarms:?}");
    }
}
