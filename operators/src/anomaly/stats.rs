//! Bounded rolling statistics the detectors share: a window of the last values with running
//! moments ([`Rolling`]), an order-statistics window for medians, MADs and ranks
//! ([`SortedWindow`]), and the normal tail used to turn a z-score into a score in [0, 1].
//!
//! The sorted window is a plain sorted `Vec` updated with binary search and `memmove`. For the
//! window sizes a detector uses (tens to a few thousand values) this beats heap- or tree-based
//! rolling medians, and it answers the MAD (the median of |x − median|) in O(log² n) without a
//! second window: see [`SortedWindow::mad`]. (Crates checked: `rolling-median` keeps a running
//! median of *all* values, without removal; `streaming-median` has no MAD or rank queries.)

use std::collections::VecDeque;

/// The last values of a key, bounded by a count and optionally by age, with their sum and sum
/// of squares.
#[derive(Clone, Debug)]
pub(crate) struct Rolling {
    values: VecDeque<(i64, f64)>,
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
        Self {
            values: VecDeque::new(),
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
            while let Some(&(t, v)) = self.values.front() {
                if t > time.saturating_sub(age) {
                    break;
                }
                self.values.pop_front();
                self.sum -= v;
                self.sum_sq -= v * v;
                dropped(v);
            }
        }
    }

    /// Removes every value.
    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.sum = 0.0;
        self.sum_sq = 0.0;
    }

    /// Adds a value (dropping the oldest one when full); returns the value dropped.
    pub(crate) fn push(&mut self, time: i64, value: f64) -> Option<f64> {
        let mut dropped = None;
        if self.values.len() == self.capacity
            && let Some((_, old)) = self.values.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
            dropped = Some(old);
        }
        self.values.push_back((time, value));
        self.sum += value;
        self.sum_sq += value * value;
        self.since_exact += 1;
        if self.since_exact >= 4096 {
            self.sum = self.values.iter().map(|(_, v)| v).sum();
            self.sum_sq = self.values.iter().map(|(_, v)| v * v).sum();
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
        self.values.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}

/// The values of a window, kept sorted, for medians, MADs and ranks.
#[derive(Clone, Debug, Default)]
pub(crate) struct SortedWindow {
    sorted: Vec<f64>,
}

impl SortedWindow {
    /// Inserts a (non-NaN) value.
    pub(crate) fn insert(&mut self, value: f64) {
        let at = self.sorted.partition_point(|&x| x < value);
        self.sorted.insert(at, value);
    }

    /// Removes one copy of `value`, if present.
    pub(crate) fn remove(&mut self, value: f64) {
        let at = self.sorted.partition_point(|&x| x < value);
        if at < self.sorted.len() && self.sorted[at] == value {
            self.sorted.remove(at);
        }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The median (0 when empty).
    pub(crate) fn median(&self) -> f64 {
        let n = self.sorted.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => self.sorted[n / 2],
            _ => (self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2.0,
        }
    }

    /// The median absolute deviation from `median` (the median of the window).
    ///
    /// The deviations below the median, read outwards, and those above it are two sorted
    /// sequences; their k-th smallest element is found by binary search on the split, so no
    /// second window of deviations is needed.
    pub(crate) fn mad(&self, median: f64) -> f64 {
        let n = self.sorted.len();
        if n < 2 {
            return 0.0;
        }
        // Below: indices split-1, split-2, … 0 (deviation median − x, ascending).
        // Above: indices split, split+1, … (deviation x − median, ascending).
        let split = self.sorted.partition_point(|&x| x < median);
        let below = |i: usize| median - self.sorted[split - 1 - i];
        let above = |j: usize| self.sorted[split + j] - median;
        let (nb, na) = (split, n - split);
        let kth = |k: usize| -> f64 {
            // The k-th (0-based) smallest of the merged sequences: take i from below and
            // k + 1 - i from above, with i found by binary search.
            let (mut lo, mut hi) = (k.saturating_sub(na - 1).min(nb), (k + 1).min(nb));
            while lo < hi {
                let i = (lo + hi) / 2;
                let j = k + 1 - i; // taking i from below leaves j from above
                // Too few from below if below[i] < above[j - 1].
                if j > 0 && j <= na && below(i) < above(j - 1) {
                    lo = i + 1;
                } else {
                    hi = i;
                }
            }
            let i = lo;
            let j = k + 1 - i;
            let last_below = (i > 0).then(|| below(i - 1));
            let last_above = (j > 0 && j <= na).then(|| above(j - 1));
            match (last_below, last_above) {
                (Some(b), Some(a)) => b.max(a),
                (Some(b), None) => b,
                (None, Some(a)) => a,
                (None, None) => 0.0,
            }
        };
        if n % 2 == 1 {
            kth(n / 2)
        } else {
            (kth(n / 2 - 1) + kth(n / 2)) / 2.0
        }
    }

    /// The smallest and largest values (0, 0 when empty).
    pub(crate) fn extremes(&self) -> (f64, f64) {
        match (self.sorted.first(), self.sorted.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0.0, 0.0),
        }
    }

    /// The mean absolute deviation from `center`, in O(n): a fallback spread for windows whose
    /// MAD is 0 (more than half the values equal).
    pub(crate) fn mean_abs_deviation(&self, center: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        self.sorted.iter().map(|x| (x - center).abs()).sum::<f64>() / self.sorted.len() as f64
    }

    /// How many values are `>= value` and how many are `<= value`.
    pub(crate) fn ranks(&self, value: f64) -> (usize, usize) {
        let below = self.sorted.partition_point(|&x| x < value);
        let at_most = self.sorted.partition_point(|&x| x <= value);
        (self.sorted.len() - below, at_most)
    }

    /// Bytes held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<f64>()
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

    fn brute_mad(values: &[f64]) -> f64 {
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        let mut v = values.to_vec();
        let m = median(&mut v);
        let mut dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
        median(&mut dev)
    }

    #[test]
    fn mad_matches_brute_force() {
        let mut seed = 7u64;
        for n in 2..60 {
            let mut window = SortedWindow::default();
            let mut values = Vec::new();
            for _ in 0..n {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Few distinct values, so ties are common.
                let v = ((seed >> 33) % 17) as f64 - 5.0;
                values.push(v);
                window.insert(v);
            }
            let got = window.mad(window.median());
            assert_eq!(got, brute_mad(&values), "n = {n}, values = {values:?}");
        }
    }

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
