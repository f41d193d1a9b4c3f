//! Bounded rolling statistics the detectors share: a window of the last values with running
//! moments ([`Rolling`]), an order-statistics window for medians, MADs and ranks
//! ([`SortedWindow`]), and the normal tail used to turn a z-score into a score in [0, 1].
//!
//! The sorted window is a list of sorted blocks of at most 128 values, updated with binary
//! search and a `memmove` inside one block (see [`SortedWindow`]). It answers ranks in
//! O(log n + blocks) and the MAD (the median of |x − median|) in O(log² n) without a second
//! window: see [`SortedWindow::mad`]. (Crates checked: `rolling-median` keeps a running
//! median of *all* values, without removal; `streaming-median` has no MAD or rank queries.)

use std::collections::VecDeque;

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
        Self {
            values: VecDeque::new(),
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

/// Most values one block of a [`SortedWindow`] holds; a full block splits in two halves.
const BLOCK: usize = 128;

/// Adjacent blocks holding this many values or fewer together are merged.
const MERGE: usize = BLOCK / 2;

/// The values of a window, kept sorted, for medians, MADs and ranks.
///
/// The values are cut into sorted blocks of at most [`BLOCK`] values (1 KiB), with the
/// largest value and the length of each block kept in two small arrays beside them. An
/// insert or a removal binary-searches those arrays, then shifts the values of one block: a
/// few cache lines, however long the window. (A single sorted `Vec` moved half the window per
/// update: 12 KB per point with 1500 values, which capped `spike_dip` at 0.5 M points/s.)
/// Ranks add the lengths of the blocks before the value's block; the k-th value walks them.
#[derive(Clone, Debug, Default)]
pub(crate) struct SortedWindow {
    /// Sorted blocks, each sorted; only the last one left may be empty.
    blocks: Vec<Vec<f64>>,
    /// The largest value of each block.
    tops: Vec<f64>,
    /// The length of each block.
    counts: Vec<u32>,
    len: usize,
    /// The blocks' capacities added up (kept as they change, so measuring is O(1)).
    capacity: usize,
}

impl SortedWindow {
    /// Inserts a (non-NaN) value.
    pub(crate) fn insert(&mut self, value: f64) {
        self.len += 1;
        if self.blocks.is_empty() {
            let mut block = Vec::with_capacity(8);
            block.push(value);
            self.capacity += block.capacity();
            self.blocks.push(block);
            self.tops.push(value);
            self.counts.push(1);
            return;
        }
        // The first block whose largest value is not below `value`, or the last block.
        let b = self
            .tops
            .partition_point(|&t| t < value)
            .min(self.blocks.len() - 1);
        let block = &mut self.blocks[b];
        let at = block.partition_point(|&x| x < value);
        let before = block.capacity();
        block.insert(at, value);
        self.capacity = self.capacity + block.capacity() - before;
        self.counts[b] += 1;
        if at + 1 == block.len() {
            self.tops[b] = value;
        }
        if block.len() >= BLOCK {
            let mut right = Vec::with_capacity(BLOCK);
            right.extend_from_slice(&block[BLOCK / 2..]);
            block.truncate(BLOCK / 2);
            self.capacity += right.capacity();
            self.tops[b] = block[BLOCK / 2 - 1];
            self.counts[b] = (BLOCK / 2) as u32;
            self.tops.insert(b + 1, right[right.len() - 1]);
            self.counts.insert(b + 1, right.len() as u32);
            self.blocks.insert(b + 1, right);
        }
    }

    /// Removes one copy of `value`, if present.
    pub(crate) fn remove(&mut self, value: f64) {
        let b = self.tops.partition_point(|&t| t < value);
        let Some(block) = self.blocks.get_mut(b) else {
            return;
        };
        let at = block.partition_point(|&x| x < value);
        if at >= block.len() || block[at] != value {
            return;
        }
        block.remove(at);
        self.len -= 1;
        self.counts[b] -= 1;
        if let Some(&top) = block.last() {
            self.tops[b] = top;
        } else if self.blocks.len() > 1 {
            self.remove_block(b);
            return;
        }
        // Keep blocks from fragmenting: merge with a neighbour when both fit in half a block.
        if b + 1 < self.blocks.len() && (self.counts[b] + self.counts[b + 1]) as usize <= MERGE {
            self.merge_into_left(b);
        } else if b > 0 && (self.counts[b - 1] + self.counts[b]) as usize <= MERGE {
            self.merge_into_left(b - 1);
        }
    }

    fn remove_block(&mut self, b: usize) {
        self.capacity -= self.blocks.remove(b).capacity();
        self.tops.remove(b);
        self.counts.remove(b);
    }

    /// Appends block `b + 1` to block `b` (they are adjacent, so the result is sorted).
    fn merge_into_left(&mut self, b: usize) {
        let right = self.blocks.remove(b + 1);
        self.tops.remove(b + 1);
        let moved = self.counts.remove(b + 1);
        let before = self.blocks[b].capacity();
        self.blocks[b].extend_from_slice(&right);
        self.capacity = self.capacity + self.blocks[b].capacity() - before - right.capacity();
        self.counts[b] += moved;
        if let Some(&top) = self.blocks[b].last() {
            self.tops[b] = top;
        }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `k`-th smallest value (0-based, `k < len`).
    fn kth(&self, mut k: usize) -> f64 {
        for (block, &count) in self.blocks.iter().zip(&self.counts) {
            let count = count as usize;
            if k < count {
                return block[k];
            }
            k -= count;
        }
        f64::NAN
    }

    /// The median (0 when empty).
    pub(crate) fn median(&self) -> f64 {
        let n = self.len;
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => self.kth(n / 2),
            _ => (self.kth(n / 2 - 1) + self.kth(n / 2)) / 2.0,
        }
    }

    /// How many values are below `value` (`inclusive`: at most `value`).
    fn rank(&self, value: f64, inclusive: bool) -> usize {
        let before = |x: f64| if inclusive { x <= value } else { x < value };
        let b = self.tops.partition_point(|&t| before(t));
        let whole: u32 = self.counts[..b].iter().sum();
        let partial = self
            .blocks
            .get(b)
            .map_or(0, |block| block.partition_point(|&x| before(x)));
        whole as usize + partial
    }

    /// The median absolute deviation from `median` (the median of the window).
    ///
    /// The deviations below the median, read outwards, and those above it are two sorted
    /// sequences; their k-th smallest element is found by binary search on the split, so no
    /// second window of deviations is needed.
    pub(crate) fn mad(&self, median: f64) -> f64 {
        let n = self.len;
        if n < 2 {
            return 0.0;
        }
        // Index access: walking the block lengths is cheapest for a few blocks; beyond that,
        // binary search on the blocks' starting positions.
        let mut starts = Vec::new();
        if self.blocks.len() > 8 {
            starts.reserve(self.blocks.len());
            let mut start = 0;
            for &count in &self.counts {
                starts.push(start);
                start += count as usize;
            }
        }
        let get = |i: usize| -> f64 {
            if starts.is_empty() {
                return self.kth(i);
            }
            let b = starts.partition_point(|&s| s <= i) - 1;
            self.blocks[b][i - starts[b]]
        };
        // Below: indices split-1, split-2, … 0 (deviation median − x, ascending).
        // Above: indices split, split+1, … (deviation x − median, ascending).
        let split = self.rank(median, false);
        let below = |i: usize| median - get(split - 1 - i);
        let above = |j: usize| get(split + j) - median;
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
        match (
            self.blocks.first().and_then(|b| b.first()),
            self.tops.last(),
        ) {
            (Some(&lo), Some(&hi)) if self.len > 0 => (lo, hi),
            _ => (0.0, 0.0),
        }
    }

    /// The mean absolute deviation from `center`, in O(n): a fallback spread for windows whose
    /// MAD is 0 (more than half the values equal).
    pub(crate) fn mean_abs_deviation(&self, center: f64) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        let total: f64 = self
            .blocks
            .iter()
            .flat_map(|b| b.iter())
            .map(|x| (x - center).abs())
            .sum();
        total / self.len as f64
    }

    /// How many values are `>= value` and how many are `<= value`.
    pub(crate) fn ranks(&self, value: f64) -> (usize, usize) {
        (self.len - self.rank(value, false), self.rank(value, true))
    }

    /// Bytes held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.capacity * std::mem::size_of::<f64>()
            + self.blocks.capacity() * std::mem::size_of::<Vec<f64>>()
            + self.tops.capacity() * std::mem::size_of::<f64>()
            + self.counts.capacity() * std::mem::size_of::<u32>()
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

    /// The blocked window against a plain sorted `Vec`, over windows of many blocks that
    /// slide (so blocks split, empty and merge), with continuous values and with many ties.
    #[test]
    fn sorted_window_matches_a_sorted_vec() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 33
        };
        for (size, distinct) in [(1000usize, 0u64), (700, 13), (300, 1), (5, 0), (129, 3)] {
            let mut window = SortedWindow::default();
            let mut arrival = VecDeque::new();
            let mut model: Vec<f64> = Vec::new();
            for step in 0..size * 4 {
                let v = if distinct == 0 {
                    (next() % 1_000_000) as f64 / 7.0
                } else {
                    (next() % distinct) as f64
                };
                // Grow to `size`, then slide; now and then shrink by a burst of removals.
                if arrival.len() == size || (step % 997 == 0 && !arrival.is_empty()) {
                    let burst = if arrival.len() == size {
                        1
                    } else {
                        arrival.len() / 2
                    };
                    for _ in 0..burst {
                        let old: f64 = arrival.pop_front().unwrap();
                        window.remove(old);
                        let at = model.iter().position(|&x| x == old).unwrap();
                        model.remove(at);
                    }
                }
                window.insert(v);
                arrival.push_back(v);
                let at = model.partition_point(|&x| x < v);
                model.insert(at, v);
                assert_eq!(window.len(), model.len());
                if step % 37 == 0 || step < 300 {
                    let n = model.len();
                    let median = if n % 2 == 1 {
                        model[n / 2]
                    } else {
                        (model[n / 2 - 1] + model[n / 2]) / 2.0
                    };
                    assert_eq!(window.median(), median, "size {size}, step {step}");
                    assert_eq!(window.mad(median), brute_mad(&model), "size {size}");
                    assert_eq!(window.extremes(), (model[0], model[n - 1]));
                    let probe = model[(next() as usize) % n] + [0.0, 0.5, -0.5][step % 3];
                    let ge = model.iter().filter(|&&x| x >= probe).count();
                    let le = model.iter().filter(|&&x| x <= probe).count();
                    assert_eq!(window.ranks(probe), (ge, le), "size {size}, probe {probe}");
                }
            }
            let capacity: usize = window.blocks.iter().map(Vec::capacity).sum();
            assert_eq!(
                window.capacity, capacity,
                "the capacity kept as blocks change"
            );
            // Bounded fragmentation: blocks stay at least a quarter full on average.
            assert!(
                window.blocks.len() <= 4 * model.len() / BLOCK + 2,
                "{} blocks for {} values",
                window.blocks.len(),
                model.len()
            );
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
