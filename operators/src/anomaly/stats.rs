//! Bounded rolling statistics the detectors share: a window of the last values with running
//! moments ([`Rolling`]), an order-statistics window for medians, MADs and ranks
//! ([`SortedWindow`]), and the normal tail used to turn a z-score into a score in [0, 1].
//!
//! The sorted window lives in `super::sorted`.

use std::collections::VecDeque;

pub(crate) use super::sorted::SortedWindow;

/// The last values of a key, bounded by a count and optionally by age, with their sum and sum
/// of squares. Times are kept only for an age bound.
#[derive(Clone, Debug)]
pub(crate) struct Rolling {
    values: VecDeque<f64>,
    /// The values' times, with `max_age` only (empty otherwise).
    times: VecDeque<i64>,
    capacity: usize,
    max_age: Option<i64>,
    sum: f64,
    sum_sq: f64,
    /// Pushes since the sums were last recomputed from scratch (to bound rounding drift).
    since_exact: u32,
}

impl Rolling {
    /// At most `capacity` values, and with `max_age` only those younger than it.
    pub(crate) fn new(capacity: usize, max_age: Option<i64>) -> Self {
        // A count window fills: allocate it once rather than doubling towards it (which would
        // also round 1500 up to 2048). Age windows and huge counts grow as needed.
        let values = match max_age {
            None if capacity <= 4096 => VecDeque::with_capacity(capacity),
            _ => VecDeque::new(),
        };
        Self {
            values,
            times: VecDeque::new(),
            capacity: capacity.max(1),
            max_age,
            sum: 0.0,
            sum_sq: 0.0,
            since_exact: 0,
        }
    }

    /// Drops values `max_age` or more before `time`, handing each to `dropped`.
    pub(crate) fn expire(&mut self, time: i64, mut dropped: impl FnMut(f64)) {
        if let Some(age) = self.max_age {
            while let Some(&t) = self.times.front() {
                if t > time.saturating_sub(age) {
                    break;
                }
                self.times.pop_front();
                if let Some(v) = self.values.pop_front() {
                    self.sum -= v;
                    self.sum_sq -= v * v;
                    dropped(v);
                }
            }
        }
    }

    /// Removes every value.
    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.times.clear();
        self.sum = 0.0;
        self.sum_sq = 0.0;
    }

    /// Adds a value (dropping the oldest one when full); returns the value dropped.
    pub(crate) fn push(&mut self, time: i64, value: f64) -> Option<f64> {
        let mut dropped = None;
        if self.values.len() == self.capacity
            && let Some(old) = self.values.pop_front()
        {
            self.times.pop_front();
            self.sum -= old;
            self.sum_sq -= old * old;
            dropped = Some(old);
        }
        self.values.push_back(value);
        if self.max_age.is_some() {
            self.times.push_back(time);
        }
        self.sum += value;
        self.sum_sq += value * value;
        self.since_exact += 1;
        if self.since_exact >= 4096 {
            self.sum = self.values.iter().sum();
            self.sum_sq = self.values.iter().map(|v| v * v).sum();
            self.since_exact = 0;
        }
        dropped
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Mean of the values held (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        if self.values.is_empty() {
            0.0
        } else {
            self.sum / self.values.len() as f64
        }
    }

    /// Sample standard deviation of the values held (0 with fewer than two).
    pub(crate) fn std(&self) -> f64 {
        let n = self.values.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.sum / n;
        ((self.sum_sq - n * mean * mean) / (n - 1.0))
            .max(0.0)
            .sqrt()
    }

    /// Bytes held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<f64>()
            + self.times.capacity() * std::mem::size_of::<i64>()
    }
}

/// The complementary error function (W. J. Cody's rational approximations as given in
/// Numerical Recipes `erfcc`, relative error below 1.2e-7 everywhere).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The two-sided normal tail probability of `|z|`: P(|Z| ≥ |z|).
pub(crate) fn two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// The natural log of [`two_sided_p`], accurate far into the tail where the p-value itself
/// underflows (the asymptotic expansion of erfc beyond 30σ).
pub(crate) fn ln_two_sided_p(z: f64) -> f64 {
    let z = z.abs();
    if z < 30.0 {
        two_sided_p(z).max(f64::MIN_POSITIVE).ln()
    } else {
        -z * z / 2.0 - z.ln() + (2.0 / std::f64::consts::PI).sqrt().ln()
    }
}

/// The score of a statistic `x ≥ 0` whose anomaly limit is `limit > 0`: `x / (x + limit)`.
///
/// Every method scores this way, so 0.5 means "at the method's limit" whatever the method,
/// scores of different methods compare (an ensemble takes their maximum or mean), and the
/// score never saturates: twice as far out always scores higher, which a ranking (choosing a
/// threshold on labelled data) needs. `1 − p` would round to exactly 1 beyond 8σ.
pub(crate) fn ratio_score(x: f64, limit: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        0.0
    } else if limit <= 0.0 || x.is_infinite() {
        1.0
    } else {
        x / (x + limit)
    }
}

/// Keeps a divisor away from zero: a flat history would otherwise make any change infinitely
/// surprising. The floor is relative to the level, with an absolute floor for values near 0.
pub(crate) fn spread_floor(spread: f64, level: f64) -> f64 {
    spread.max(level.abs() * 1e-3).max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_moments_and_expiry() {
        let mut r = Rolling::new(3, Some(10));
        for (t, v) in [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)] {
            r.push(t, v);
        }
        assert_eq!(r.len(), 3);
        assert!((r.mean() - 3.0).abs() < 1e-12);
        assert!((r.std() - 1.0).abs() < 1e-12);
        r.expire(12, |_| {});
        assert_eq!(r.len(), 1);
        assert_eq!(r.mean(), 4.0);
    }

    #[test]
    fn normal_tail() {
        assert!((two_sided_p(1.959_964) - 0.05).abs() < 1e-6);
        assert!((ln_two_sided_p(3.0) - 0.0027f64.ln()).abs() < 1e-2);
        assert!((ln_two_sided_p(40.0) - ln_two_sided_p(29.99)) < -300.0);
        assert_eq!(ratio_score(3.0, 3.0), 0.5);
        assert_eq!(ratio_score(0.0, 3.0), 0.0);
        assert!(ratio_score(1e6, 3.0) < ratio_score(1e7, 3.0));
        let (ge, le) = {
            let mut w = SortedWindow::default();
            for v in [1.0, 2.0, 2.0, 3.0] {
                w.insert(v);
            }
            w.remove(2.0);
            w.ranks(2.0)
        };
        assert_eq!((ge, le), (2, 2));
    }
}
