//! [`SortedWindow`]: the values of a key's window kept sorted, for medians, MADs and ranks
//! (`mad`, `spike_dip`).
//!
//! Up to [`BLOCK`] values live in one sorted `Vec` (one allocation, a `memmove` of at most
//! 1 KiB per update). Longer windows switch to sorted blocks of at most `BLOCK` values, with
//! the largest value and the length of each block kept in two small arrays beside them: an
//! insert or a removal binary-searches those arrays, then shifts the values of one block, a
//! few cache lines however long the window. (A single sorted `Vec` moved half the window per
//! update: 12 KB per point with 1500 values, which capped `spike_dip` at 0.5 M points/s.)
//! Ranks add the lengths of the blocks before the value's block; the k-th value walks them.
//! The MAD (the median of |x − median|) comes in O(log² n) without a second window: see
//! [`SortedWindow::mad`]. (Crates checked: `rolling-median` keeps a running median of *all*
//! values, without removal; `streaming-median` has no MAD or rank queries.)

/// How many of the sorted `values` are below `value`: where it would be inserted.
///
/// A branch-free count rather than a binary search: the window of a key seen 10,000 keys ago
/// is not in cache, and a binary search waits for one cache miss after another, where a
/// front-to-back count streams the (at most 1 KiB of) values and vectorises.
fn count_below(values: &[f64], value: f64) -> usize {
    values.iter().map(|&x| usize::from(x < value)).sum()
}

/// How many of the sorted `values` are at most `value`.
fn count_at_most(values: &[f64], value: f64) -> usize {
    values.iter().map(|&x| usize::from(x <= value)).sum()
}

/// The values of a window, kept sorted, for medians, MADs and ranks.
#[derive(Clone, Debug)]
pub(crate) enum SortedWindow {
    /// At most [`BLOCK`] values, sorted.
    Flat(Vec<f64>),
    /// More: sorted blocks.
    Blocks(Blocks),
}

impl Default for SortedWindow {
    fn default() -> Self {
        Self::Flat(Vec::new())
    }
}

impl SortedWindow {
    /// Inserts a (non-NaN) value.
    pub(crate) fn insert(&mut self, value: f64) {
        match self {
            Self::Flat(values) => {
                let at = count_below(values, value);
                values.insert(at, value);
                if values.len() >= BLOCK {
                    *self = Self::Blocks(Blocks::from_sorted(values));
                }
            }
            Self::Blocks(blocks) => blocks.insert(value),
        }
    }

    /// Removes one copy of `value`, if present.
    pub(crate) fn remove(&mut self, value: f64) {
        match self {
            Self::Flat(values) => {
                let at = count_below(values, value);
                if at < values.len() && values[at] == value {
                    values.remove(at);
                }
            }
            Self::Blocks(blocks) => blocks.remove(value),
        }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Flat(values) => values.len(),
            Self::Blocks(blocks) => blocks.len(),
        }
    }

    /// How many values are below `value` (`inclusive`: at most `value`).
    fn rank(&self, value: f64, inclusive: bool) -> usize {
        match self {
            Self::Flat(values) if inclusive => count_at_most(values, value),
            Self::Flat(values) => count_below(values, value),
            Self::Blocks(blocks) => blocks.rank(value, inclusive),
        }
    }

    /// The `k`-th smallest value (0-based, `k < len`).
    fn kth(&self, k: usize) -> f64 {
        match self {
            Self::Flat(values) => values[k],
            Self::Blocks(blocks) => blocks.kth(k),
        }
    }

    /// The median (0 when empty).
    pub(crate) fn median(&self) -> f64 {
        let n = self.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => self.kth(n / 2),
            _ => (self.kth(n / 2 - 1) + self.kth(n / 2)) / 2.0,
        }
    }

    /// The median absolute deviation from `median` (the median of the window).
    ///
    /// The deviations below the median, read outwards, and those above it are two sorted
    /// sequences; their k-th smallest element is found by binary search on the split, so no
    /// second window of deviations is needed.
    pub(crate) fn mad(&self, median: f64) -> f64 {
        let n = self.len();
        if n < 2 {
            return 0.0;
        }
        // Index access: direct in a flat window; in blocks, binary search on their starts.
        let starts = match self {
            Self::Flat(_) => Vec::new(),
            Self::Blocks(blocks) => blocks.starts(),
        };
        let get = |i: usize| -> f64 {
            match self {
                Self::Flat(values) => values[i],
                Self::Blocks(blocks) => {
                    let b = starts.partition_point(|&s| s <= i) - 1;
                    blocks.blocks[b][i - starts[b]]
                }
            }
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
        match self {
            Self::Flat(values) => match (values.first(), values.last()) {
                (Some(&lo), Some(&hi)) => (lo, hi),
                _ => (0.0, 0.0),
            },
            Self::Blocks(blocks) => blocks.extremes(),
        }
    }

    /// The mean absolute deviation from `center`, in O(n): a fallback spread for windows whose
    /// MAD is 0 (more than half the values equal).
    pub(crate) fn mean_abs_deviation(&self, center: f64) -> f64 {
        let n = self.len();
        if n == 0 {
            return 0.0;
        }
        let total: f64 = match self {
            Self::Flat(values) => values.iter().map(|x| (x - center).abs()).sum(),
            Self::Blocks(blocks) => blocks
                .blocks
                .iter()
                .flat_map(|b| b.iter())
                .map(|x| (x - center).abs())
                .sum(),
        };
        total / n as f64
    }

    /// How many values are `>= value` and how many are `<= value`.
    pub(crate) fn ranks(&self, value: f64) -> (usize, usize) {
        (self.len() - self.rank(value, false), self.rank(value, true))
    }

    /// Bytes held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Flat(values) => values.capacity() * std::mem::size_of::<f64>(),
            Self::Blocks(blocks) => blocks.heap_bytes(),
        }
    }
}

/// Most values one block of a [`SortedWindow`] holds; a full block splits in two halves.
const BLOCK: usize = 128;

/// Adjacent blocks holding this many values or fewer together are merged.
const MERGE: usize = BLOCK / 2;

/// Many values, cut into sorted blocks of at most [`BLOCK`] values (1 KiB), with the
/// largest value and the length of each block kept in two small arrays beside them. An
/// insert or a removal binary-searches those arrays, then shifts the values of one block: a
/// few cache lines, however long the window. (A single sorted `Vec` moved half the window per
/// update: 12 KB per point with 1500 values, which capped `spike_dip` at 0.5 M points/s.)
/// Ranks add the lengths of the blocks before the value's block; the k-th value walks them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Blocks {
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

impl Blocks {
    /// Blocks of half a block each from `sorted` values (which it empties).
    fn from_sorted(sorted: &mut Vec<f64>) -> Self {
        let mut blocks = Self::default();
        for chunk in sorted.chunks(BLOCK / 2) {
            let mut block = Vec::with_capacity(BLOCK);
            block.extend_from_slice(chunk);
            blocks.capacity += block.capacity();
            blocks.tops.push(chunk[chunk.len() - 1]);
            blocks.counts.push(chunk.len() as u32);
            blocks.len += chunk.len();
            blocks.blocks.push(block);
        }
        *sorted = Vec::new();
        blocks
    }

    /// The index of the first value of each block.
    fn starts(&self) -> Vec<usize> {
        let mut starts = Vec::with_capacity(self.counts.len());
        let mut start = 0;
        for &count in &self.counts {
            starts.push(start);
            start += count as usize;
        }
        starts
    }

    /// Inserts a (non-NaN) value.
    fn insert(&mut self, value: f64) {
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
        let b = count_below(&self.tops, value).min(self.blocks.len() - 1);
        let block = &mut self.blocks[b];
        let at = count_below(block, value);
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
    fn remove(&mut self, value: f64) {
        let b = count_below(&self.tops, value);
        let Some(block) = self.blocks.get_mut(b) else {
            return;
        };
        let at = count_below(block, value);
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
    fn len(&self) -> usize {
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

    /// How many values are below `value` (`inclusive`: at most `value`).
    fn rank(&self, value: f64, inclusive: bool) -> usize {
        let position = |values: &[f64]| {
            if inclusive {
                count_at_most(values, value)
            } else {
                count_below(values, value)
            }
        };
        let b = position(&self.tops);
        let whole: u32 = self.counts[..b].iter().sum();
        let partial = self.blocks.get(b).map_or(0, |block| position(block));
        whole as usize + partial
    }

    /// The smallest and largest values (0, 0 when empty).
    fn extremes(&self) -> (f64, f64) {
        match (
            self.blocks.first().and_then(|b| b.first()),
            self.tops.last(),
        ) {
            (Some(&lo), Some(&hi)) if self.len > 0 => (lo, hi),
            _ => (0.0, 0.0),
        }
    }

    /// Bytes held on the heap.
    fn heap_bytes(&self) -> usize {
        self.capacity * std::mem::size_of::<f64>()
            + self.blocks.capacity() * std::mem::size_of::<Vec<f64>>()
            + self.tops.capacity() * std::mem::size_of::<f64>()
            + self.counts.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

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
            let SortedWindow::Blocks(blocks) = &window else {
                assert!(size < BLOCK, "size {size} stays flat");
                continue;
            };
            let capacity: usize = blocks.blocks.iter().map(Vec::capacity).sum();
            assert_eq!(
                blocks.capacity, capacity,
                "the capacity kept as blocks change"
            );
            // Bounded fragmentation: blocks stay at least a quarter full on average.
            assert!(
                blocks.blocks.len() <= 4 * model.len() / BLOCK + 2,
                "{} blocks for {} values",
                blocks.blocks.len(),
                model.len()
            );
        }
    }
}
