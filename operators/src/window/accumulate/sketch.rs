//! `median`, `quantile(x, q)` and `distinct_count(x)`: sketches of constant size per group.
//!
//! # Quantiles: DDSketch
//!
//! Each group holds a [`DDSketch`] (crate `sketches-ddsketch`, a port of Datadog's reference
//! implementation) with relative accuracy α = [`RELATIVE_ACCURACY`] (1%) and at most
//! [`MAX_BINS`] bins per sign. A value `v` falls in the bin `⌊log_γ |v|⌋` with
//! γ = (1 + α)/(1 − α), and a bin answers with the value that is within α of every value in
//! it. So `quantile(x, q)` returns an estimate of the value of rank `⌊q·(n − 1)⌋` (0-based)
//! among the group's sorted values (for `median`, the lower middle of an even count) with
//!
//! ```text
//! |estimate − exact| ≤ α·|exact|        (and ≤ 1e-9 for |exact| ≤ 1e-9, kept as 0)
//! ```
//!
//! `q = 0` and `q = 1` give the exact minimum and maximum. The bound holds while a sign's
//! values span less than γ^2048 ≈ 6·10¹⁷ (from 10⁻⁹ to 6·10⁸, say); past that the lowest bins
//! are merged and only the low quantiles lose accuracy. Memory: about 200 bytes per group,
//! plus 8 bytes a bin in chunks of 128 bins: values spanning a factor of 10 use about 1 KiB,
//! the worst case is 32 KiB. The property test `quantile_error_is_within_the_documented_bound`
//! checks the bound against exact quantiles on random data.
//!
//! # Distinct values: exact, then HyperLogLog++
//!
//! Each value is hashed (64 bits, fixed seeds, so results repeat run to run; `-0.0` counts as
//! `0.0`, NaN and null are skipped). A group keeps the set of hashes until it has more than
//! [`EXACT_DISTINCT`] (256) of them, so counts up to 256 are exact (up to 64-bit hash
//! collisions, about one chance in 10¹⁴). Above that it moves to a HyperLogLog++ estimator
//! (crate `cardinality-estimator`, Cloudflare's; precision 12: 4,096 registers of 6 bits,
//! about 3 KiB) whose standard error is 1.04/√4096 ≈ 1.6%. The test
//! `distinct_count_is_exact_below_the_bound_and_close_above` measures it.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use cardinality_estimator::CardinalityEstimator;
use edgeflow_engine::arrow::array::{ArrayRef, Float64Array, Int64Array};
use sketches_ddsketch::{Config, DDSketch};

use super::{Values, each_float, each_int, each_text};
use crate::window::Selection;

/// Relative accuracy α of `median` and `quantile`.
pub(crate) const RELATIVE_ACCURACY: f64 = 0.01;
/// Bins per sign of a quantile sketch.
pub(crate) const MAX_BINS: u32 = 2048;
/// Values closer to zero than this count as zero in a quantile sketch.
pub(crate) const MIN_VALUE: f64 = 1e-9;
/// Distinct values counted exactly per group before switching to HyperLogLog++.
pub(crate) const EXACT_DISTINCT: usize = 256;

fn sketch_config() -> Config {
    Config::new(RELATIVE_ACCURACY, MAX_BINS, MIN_VALUE)
}

/// A DDSketch per group.
#[derive(Clone)]
pub(crate) struct Quantiles {
    config: Config,
    sketches: Vec<DDSketch>,
}

impl fmt::Debug for Quantiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quantiles")
            .field("groups", &self.sketches.len())
            .finish()
    }
}

impl Quantiles {
    pub(super) fn new() -> Self {
        Self {
            config: sketch_config(),
            sketches: Vec::new(),
        }
    }

    pub(super) fn grow(&mut self, groups: usize) {
        let config = self.config;
        self.sketches.resize_with(groups, || DDSketch::new(config));
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.sketches[group] = DDSketch::new(self.config);
    }

    pub(super) fn update(&mut self, values: &Values, rows: Selection<'_>, gids: &[u32]) {
        let sketches = &mut self.sketches;
        match values {
            Values::Float(input) => each_float(input, rows, gids, |g, _, x| sketches[g].add(x)),
            Values::Int(input) => {
                each_int(input, rows, gids, |g, _, x| sketches[g].add(x as f64));
            }
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, level: f64, order: &[u32]) -> ArrayRef {
        Arc::new(Float64Array::from_iter(order.iter().map(|&g| {
            // The planner checks that the level is in [0, 1], the only error of `quantile`.
            self.sketches[g as usize].quantile(level).ok().flatten()
        })))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        // Two stores of u64 bins per sketch.
        self.sketches.iter().map(|s| s.length() * 8).sum()
    }
}

/// Hashes of values are already uniform: the set uses them as they are.
#[derive(Clone, Copy, Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashSetU64 = HashSet<u64, BuildHasherDefault<Identity>>;

/// The distinct values of one group.
#[derive(Clone, Debug)]
enum DistinctSet {
    /// Up to [`EXACT_DISTINCT`] hashes.
    Exact(HashSetU64),
    /// More: a HyperLogLog++ estimator.
    Estimated(CardinalityEstimator<u64>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        Self::Exact(HashSetU64::default())
    }
}

impl DistinctSet {
    #[inline]
    fn insert(&mut self, hash: u64) {
        match self {
            Self::Exact(set) => {
                if set.insert(hash) && set.len() > EXACT_DISTINCT {
                    let mut estimator = CardinalityEstimator::<u64>::new();
                    for &h in set.iter() {
                        estimator.insert_hash(h);
                    }
                    *self = Self::Estimated(estimator);
                }
            }
            Self::Estimated(estimator) => estimator.insert_hash(hash),
        }
    }

    fn count(&self) -> i64 {
        match self {
            Self::Exact(set) => set.len() as i64,
            Self::Estimated(estimator) => estimator.estimate() as i64,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Exact(set) => set.capacity() * 9,
            Self::Estimated(estimator) => estimator.size_of(),
        }
    }
}

/// The hasher of distinct values: fixed seeds, so that estimates repeat from run to run.
fn value_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x2d35_8dcc_aa6c_78a5,
        0x8bb8_4b93_962e_acc9,
        0x4b33_a62e_d433_d4a3,
        0x4d5a_2da5_1de1_aa47,
    )
}

/// The distinct values of every group of one window.
#[derive(Clone)]
pub(crate) struct Distinct {
    hasher: ahash::RandomState,
    sets: Vec<DistinctSet>,
}

impl fmt::Debug for Distinct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distinct")
            .field("sets", &self.sets)
            .finish()
    }
}

impl Distinct {
    pub(super) fn new() -> Self {
        Self {
            hasher: value_hasher(),
            sets: Vec::new(),
        }
    }

    pub(super) fn grow(&mut self, groups: usize) {
        self.sets.resize_with(groups, DistinctSet::default);
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.sets[group] = DistinctSet::default();
    }

    pub(super) fn update(&mut self, values: &Values, rows: Selection<'_>, gids: &[u32]) {
        let (sets, hasher) = (&mut self.sets, &self.hasher);
        match values {
            // Adding 0.0 turns -0.0 into 0.0, which compare equal.
            Values::Float(input) => each_float(input, rows, gids, |g, _, x| {
                sets[g].insert(hasher.hash_one((x + 0.0).to_bits()));
            }),
            Values::Int(input) => {
                each_int(input, rows, gids, |g, _, x| {
                    sets[g].insert(hasher.hash_one(x))
                });
            }
            Values::Text(input) => {
                each_text(input, rows, gids, |g, _, x| {
                    sets[g].insert(hasher.hash_one(x))
                });
            }
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, order: &[u32]) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            order.iter().map(|&g| self.sets[g as usize].count()),
        ))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.sets.iter().map(DistinctSet::heap_bytes).sum()
    }
}
