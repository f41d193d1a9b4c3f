//! The `change_point` method: two-sided CUSUMs against a rolling baseline, for sustained
//! shifts of level (a rise or fall) and of variance (the noise grows or shrinks), rather than
//! single spikes.
//!
//! Each value is standardised with the mean and standard deviation of the baseline window
//! (the values before it): `z = (v − mean) / std`.
//!
//! * **Level.** Two sums accumulate evidence of a shift, ignoring `drift` (k) standard
//!   deviations per value: `S⁺ = max(0, S⁺ + z − k)` and `S⁻ = max(0, S⁻ − z − k)`. A sum
//!   reaching `threshold` (h) is a level shift.
//! * **Variance.** Two sums of log-likelihood ratios test "the variance doubled" and "the
//!   variance halved" against "unchanged": per value `ln LR = −½ ln c + ½ z² (1 − 1/c)` with
//!   `c = 2` and `c = ½`. Under no change both drift down (means −0.10 and −0.15 per value);
//!   when the variance triples the first gains up to 0.40 per value. `z²` is capped at 9
//!   first, so one spike adds at most 1.9 and cannot raise the alarm alone. A sum reaching 10
//!   is a variance shift: a likelihood ratio of e¹⁰ ≈ 22,000, so false alarms are rarer than
//!   one in 22,000 stationary values (Wald's bound), whatever `threshold` says for the level.
//!   The baseline must be long enough not to learn the new spread before the alarm: with a
//!   300-value window a tripled variance is found after about 30 values (at most about 120
//!   in simulations), with a 100-value window often not at all.
//!
//! After either alarm all sums restart and the baseline is learnt again from the values after
//! the change, so one shift gives one alarm. The score is `S / (S + limit)` of the sum
//! closest to its limit: 0.5 at the alarm level.

use super::detector::Verdict;
use super::options::{Direction, Span};
use super::statistical::num;
use super::stats::{Rolling, ratio_score, spread_floor};

/// Values a fresh baseline needs before the sums run again.
const RELEARN: usize = 20;

/// `z²` is capped here before the variance sums use it (a 3σ value).
const Z2_CAP: f64 = 9.0;

/// The variance alarm level, in nats of log-likelihood ratio.
const VARIANCE_LIMIT: f64 = 10.0;

/// `ln LR` of one standardised value for "variance ×2" (up) and "variance ×½" (down).
fn variance_llr(z: f64) -> (f64, f64) {
    let z2 = (z * z).min(Z2_CAP);
    let half_ln2 = 0.5 * std::f64::consts::LN_2;
    // c = 2: −½ ln 2 + ½ z² (1 − ½); c = ½: ½ ln 2 + ½ z² (1 − 2).
    (-half_ln2 + 0.25 * z2, half_ln2 - 0.5 * z2)
}

/// `change_point` state: the baseline and the four sums.
#[derive(Clone, Debug)]
pub(crate) struct ChangePoint {
    baseline: Rolling,
    up: f64,
    down: f64,
    wider: f64,
    narrower: f64,
}

impl ChangePoint {
    pub(crate) fn new(span: &Span) -> Self {
        Self {
            baseline: Rolling::new(span.events, span.age),
            up: 0.0,
            down: 0.0,
            wider: 0.0,
            narrower: 0.0,
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
        let (wider, narrower) = variance_llr(z);
        self.wider = (self.wider + wider).max(0.0);
        self.narrower = (self.narrower + narrower).max(0.0);
        let level = self.up.max(self.down);
        let variance_limit = VARIANCE_LIMIT;
        let variance = self.wider.max(self.narrower);
        let score = ratio_score(level, threshold).max(ratio_score(variance, variance_limit));
        self.baseline.push(time, value);
        if level < threshold && variance < variance_limit {
            return Verdict::normal(score);
        }
        let reason = if level >= threshold {
            format!(
                "level shift {}: value {} after a CUSUM of {:.1} (limit {threshold}) against \
                 the mean {} ± {} of {}",
                if self.up >= self.down { "up" } else { "down" },
                num(value),
                level,
                num(mean),
                num(std),
                span.describe()
            )
        } else {
            format!(
                "variance shift {}: value {} after a likelihood-ratio CUSUM of {:.1} (limit \
                 {variance_limit}) against the standard deviation {} of {}",
                if self.wider >= self.narrower {
                    "up"
                } else {
                    "down"
                },
                num(value),
                variance,
                num(std),
                span.describe()
            )
        };
        // Learn the new level and spread from here on.
        self.up = 0.0;
        self.down = 0.0;
        self.wider = 0.0;
        self.narrower = 0.0;
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

    /// Standard normal values from a fixed seed (Box–Muller on a 64-bit LCG).
    fn normals(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
            })
            .collect()
    }

    fn alarms(span: Span, threshold: f64, values: &[f64]) -> Vec<(usize, String)> {
        let mut c = ChangePoint::new(&span);
        let mut out = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            let verdict = c.observe(&span, threshold, 0.5, Direction::Both, i as i64, v);
            if verdict.anomaly {
                out.push((i, verdict.reason.unwrap_or_default()));
            }
        }
        out
    }

    #[test]
    fn a_level_shift_gives_one_alarm() {
        let span = Span {
            events: 50,
            age: None,
        };
        let values: Vec<f64> = (0..300)
            .map(|i| {
                let noise = if i % 2 == 0 { 0.5 } else { -0.5 };
                let level = if i < 150 { 10.0 } else { 13.0 };
                level + noise
            })
            .collect();
        let alarms = alarms(span, 5.0, &values);
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!((150..155).contains(&alarms[0].0), "{alarms:?}");
        assert!(alarms[0].1.starts_with("level shift up"), "{alarms:?}");
    }

    /// The level limit here is 10, not the default 5: a level CUSUM with h = 5 and k = 0.5
    /// raises a false alarm every few hundred values of white noise by design.
    const QUIET_LEVEL: f64 = 10.0;

    #[test]
    fn a_variance_shift_is_found_soon_and_the_stationary_part_is_quiet() {
        let span = Span {
            events: 300,
            age: None,
        };
        // Several seeds: 2000 stationary values (σ 1), then the variance triples (σ √3) at
        // the same level. Each must give no alarm before the change and an alarm within 150
        // values after it. Wider noise also drives the level sums, which now and then cross
        // first; most first alarms must be variance shifts.
        let mut variance_first = 0;
        for seed in 1..=8u64 {
            let noise = normals(seed, 2300);
            let values: Vec<f64> = noise
                .iter()
                .enumerate()
                .map(|(i, z)| 50.0 + if i < 2000 { *z } else { 3f64.sqrt() * z })
                .collect();
            let found = alarms(span, QUIET_LEVEL, &values);
            assert!(
                found.iter().all(|(i, _)| *i >= 2000),
                "seed {seed}: alarm on the stationary part: {found:?}"
            );
            let (at, why) = found
                .first()
                .unwrap_or_else(|| panic!("seed {seed}: no alarm after the change"));
            assert!(*at < 2150, "seed {seed}: found only at {at}: {why}");
            if why.starts_with("variance shift up") {
                variance_first += 1;
            }
        }
        assert!(variance_first >= 6, "{variance_first} of 8");
    }

    #[test]
    fn the_variance_sums_ignore_a_single_spike_and_see_a_narrowing() {
        let span = Span {
            events: 300,
            age: None,
        };
        let mut values = normals(99, 1500);
        values[600] = 6.0; // one 6σ spike
        for v in &mut values[1000..] {
            *v *= 0.2; // the noise shrinks to a fifth
        }
        let found = alarms(span, QUIET_LEVEL, &values);
        let (at, why) = found.first().expect("the narrowing is found");
        assert!((1000..1100).contains(at), "{found:?}");
        assert!(why.starts_with("variance shift down"), "{why}");
    }
}
