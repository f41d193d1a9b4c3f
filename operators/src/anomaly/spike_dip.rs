//! The `spike_dip` method: ranks each value against the key's recent history and reports a
//! p-value-like score, as the spike-and-dip functions of cloud anomaly services do.
//!
//! For a value `v` and a history of `n` values, the one-sided p-values are
//! `(#{x ≥ v} + 1) / (n + 1)` (spike) and `(#{x ≤ v} + 1) / (n + 1)` (dip). A value beyond
//! every value of the history would get the same p-value however far out it is, so there the
//! p-value is further multiplied by the normal tail of its distance past the extreme, in
//! robust standard deviations (1.4826 × MAD). The value is an anomaly when its p-value is at
//! most `1 − confidence / 100`. The score is `s / (s + limit)` with `s = −ln p` and
//! `limit = −ln(1 − confidence / 100)`: 0.5 at the confidence level, and still ordered for
//! p-values far below what an `f64` `1 − p` could tell apart.

use super::detector::Verdict;
use super::options::Direction;
use super::statistical::num;
use super::stats::{Rolling, SortedWindow, ln_two_sided_p, ratio_score, spread_floor};

/// `spike_dip` state: the history in arrival order and sorted.
#[derive(Clone, Debug)]
pub(crate) struct SpikeDip {
    window: Rolling,
    sorted: SortedWindow,
}

impl SpikeDip {
    pub(crate) fn new(history: usize) -> Self {
        Self {
            window: Rolling::new(history, None),
            sorted: SortedWindow::default(),
        }
    }

    pub(crate) fn observe(
        &mut self,
        confidence: f64,
        direction: Direction,
        time: i64,
        value: f64,
    ) -> Verdict {
        let n = self.sorted.len();
        let verdict = if n >= 2 {
            let (at_least, at_most) = self.sorted.ranks(value);
            let total = (n + 1) as f64;
            let (lowest, highest) = self.sorted.extremes();
            // ln of the p-values, which may be far below the smallest f64.
            let mut up = ((at_least + 1) as f64 / total).ln();
            let mut down = ((at_most + 1) as f64 / total).ln();
            // The spread is only needed beyond the extremes, which few values are: the median
            // and the MAD are computed only then.
            let spread = || {
                let median = self.sorted.median();
                spread_floor(1.4826 * self.sorted.mad(median), median)
            };
            if value > highest {
                up += ln_two_sided_p((value - highest) / spread());
            }
            if value < lowest {
                down += ln_two_sided_p((lowest - value) / spread());
            }
            let (ln_p, spike) = match direction {
                Direction::Up => (up, true),
                Direction::Down => (down, false),
                Direction::Both => (up.min(down), up <= down),
            };
            let limit = -(1.0 - confidence / 100.0).max(1e-12).ln();
            let score = ratio_score(-ln_p, limit);
            let p = ln_p.exp();
            if -ln_p >= limit {
                Verdict::anomaly(score, {
                    let (kind, side, count) = if spike {
                        ("spike", "higher", at_least)
                    } else {
                        ("dip", "lower", at_most)
                    };
                    let beaten = n - count;
                    format!(
                        "{kind}: value {} is {side} than {beaten} of the last {n} values \
                         (p = {:.2e}, confidence {confidence})",
                        num(value),
                        p
                    )
                })
            } else {
                Verdict::normal(score)
            }
        } else {
            Verdict::normal(0.0)
        };
        if let Some(old) = self.window.push(time, value) {
            self.sorted.remove(old);
        }
        self.sorted.insert(value);
        verdict
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.window.heap_bytes() + self.sorted.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_and_dips_get_small_p_values() {
        let mut s = SpikeDip::new(50);
        for i in 0..50 {
            let v = 10.0 + (i % 5) as f64;
            assert!(!s.observe(95.0, Direction::Both, i, v).anomaly || i < 3);
        }
        let spike = s.observe(95.0, Direction::Both, 50, 30.0);
        assert!(spike.anomaly);
        assert!(spike.score > 0.9);
        assert!(
            spike
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("spike: value 30 is higher than 50 of the last 50")),
            "{spike:?}"
        );
        let farther = s.observe(95.0, Direction::Both, 51, 40.0);
        // 40 is ranked against a history that now holds the 30.
        assert!(farther.anomaly, "{farther:?}");
        let dip = s.observe(95.0, Direction::Up, 52, 0.0);
        assert!(!dip.anomaly);
        let middle = s.observe(95.0, Direction::Both, 53, 12.0);
        assert!(!middle.anomaly && middle.score < 0.7, "{middle:?}");
    }
}
