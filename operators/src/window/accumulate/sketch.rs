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
//! [`EXACT_DISTINCT`] (256) of them, sorted (at most 2 KiB), so counts up to 256 are exact (up
//! to 64-bit hash collisions, about one chance in 10¹⁴). Above that it moves to a HyperLogLog++ estimator
//! (crate `cardinality-estimator`, Cloudflare's; precision 12: 4,096 registers of 6 bits,
//! about 3 KiB) whose standard error is 1.04/√4096 ≈ 1.6%. The test
//! `distinct_count_is_exact_below_the_bound_and_close_above` measures it.

use std::fmt;
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
    /// Bins over every sketch, kept up to date as they grow.
    bins: usize,
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
            bins: 0,
        }
    }

    pub(super) fn grow(&mut self, groups: usize) {
        let config = self.config;
        self.sketches.resize_with(groups, || DDSketch::new(config));
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.bins -= self.sketches[group].length();
        self.sketches[group] = DDSketch::new(self.config);
    }

    pub(super) fn update(&mut self, values: &Values, rows: Selection<'_>, gids: &[u32]) {
        let (sketches, bins) = (&mut self.sketches, &mut self.bins);
        // Bins come in chunks of 128, so the count rarely changes; reading it is two loads.
        let mut add = |g: usize, x: f64| {
            let sketch = &mut sketches[g];
            let before = sketch.length();
            sketch.add(x);
            *bins = *bins + sketch.length() - before;
        };
        match values {
            Values::Float(input) => each_float(input, rows, gids, |g, _, x| add(g, x)),
            Values::Int(input) => each_int(input, rows, gids, |g, _, x| add(g, x as f64)),
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, level: f64, order: &[u32]) -> ArrayRef {
        Arc::new(Float64Array::from_iter(order.iter().map(|&g| {
            // The planner checks that the level is in [0, 1], the only error of `quantile`.
            self.sketches[g as usize].quantile(level).ok().flatten()
        })))
    }

    /// Bytes of the sketches' bins (u64 counts), in constant time.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bins * 8
    }
}

/// The distinct values of one group.
#[derive(Clone, Debug)]
enum DistinctSet {
    /// Up to [`EXACT_DISTINCT`] hashes, sorted (8 bytes each: at most 2 KiB, less than a
    /// hash set's buckets would take).
    Exact(Vec<u64>),
    /// More: a HyperLogLog++ estimator.
    Estimated(CardinalityEstimator<u64>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        Self::Exact(Vec::new())
    }
}

impl DistinctSet {
    #[inline]
    fn insert(&mut self, hash: u64) {
        match self {
            Self::Exact(set) => {
                let Err(at) = set.binary_search(&hash) else {
                    return;
                };
                if set.len() < EXACT_DISTINCT {
                    set.insert(at, hash);
                } else {
                    let mut estimator = CardinalityEstimator::<u64>::new();
                    for &h in set.iter() {
                        estimator.insert_hash(h);
                    }
                    estimator.insert_hash(hash);
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
            Self::Exact(set) => set.capacity() * 8,
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
    /// Bytes over every set, kept up to date as they grow.
    bytes: usize,
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
            bytes: 0,
        }
    }

    pub(super) fn grow(&mut self, groups: usize) {
        self.sets.resize_with(groups, DistinctSet::default);
    }

    pub(super) fn reset(&mut self, group: usize) {
        self.bytes -= self.sets[group].heap_bytes();
        self.sets[group] = DistinctSet::default();
    }

    pub(super) fn update(&mut self, values: &Values, rows: Selection<'_>, gids: &[u32]) {
        let (sets, hasher, bytes) = (&mut self.sets, &self.hasher, &mut self.bytes);
        let mut add = |g: usize, hash: u64| {
            let set = &mut sets[g];
            let before = set.heap_bytes();
            set.insert(hash);
            *bytes = *bytes + set.heap_bytes() - before;
        };
        match values {
            // Adding 0.0 turns -0.0 into 0.0, which compare equal.
            Values::Float(input) => each_float(input, rows, gids, |g, _, x| {
                add(g, hasher.hash_one((x + 0.0).to_bits()));
            }),
            Values::Int(input) => each_int(input, rows, gids, |g, _, x| add(g, hasher.hash_one(x))),
            Values::Text(input) => {
                each_text(input, rows, gids, |g, _, x| add(g, hasher.hash_one(x)));
            }
            _ => unreachable!("an accumulator and its values come from one aggregate spec"),
        }
    }

    pub(super) fn finish(&self, order: &[u32]) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            order.iter().map(|&g| self.sets[g as usize].count()),
        ))
    }

    /// Bytes of the sets and estimators, in constant time.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use edgeflow_engine::arrow::array::{Array, AsArray, StringArray};
    use edgeflow_engine::arrow::datatypes::{DataType, Int64Type};
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};

    use super::super::tests::{f64s, run_batches, spec};
    use super::*;
    use crate::fields::Numeric;
    use crate::window::expr::AggregateFunction;

    /// splitmix64: a small deterministic generator for test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A named way to draw test values.
    type Shape = (&'static str, Box<dyn Fn(&mut Rng) -> f64>);

    /// The value of rank ⌊q·(n − 1)⌋ among the sorted values, the one the sketch estimates.
    fn exact_quantile(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[(q * (sorted.len() as f64 - 1.0)) as usize]
    }

    fn sketch_quantiles(
        values: &[f64],
        groups: &[u32],
        n_groups: usize,
        q: f64,
    ) -> Vec<Option<f64>> {
        let function = if q == 0.5 {
            AggregateFunction::Median
        } else {
            AggregateFunction::Quantile
        };
        let mut spec = spec(function, Some(Numeric::Float), DataType::Float64);
        spec.level = q;
        let column: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
        let times = vec![0; values.len()];
        f64s(&run_batches(
            &spec,
            &[(column, times, groups.to_vec())],
            n_groups,
        ))
    }

    /// The documented bound: α relative, and 1e-9 absolute around zero.
    fn within_bound(estimate: f64, exact: f64) -> bool {
        (estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs() * (1.0 + 1e-9) + MIN_VALUE
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            // A sensor.
            3 => -50.0f64..150.0,
            // Many duplicates.
            2 => (-5i32..20).prop_map(f64::from),
            // Magnitudes over 13 decades, either sign.
            2 => (-15.0f64..15.0, any::<bool>())
                .prop_map(|(e, negative)| if negative { -e.exp() } else { e.exp() }),
            1 => Just(0.0),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 200,
            rng_seed: RngSeed::Fixed(0xDD5_4E7C),
            ..ProptestConfig::default()
        })]

        #[test]
        fn quantile_error_is_within_the_documented_bound(
            rows in prop::collection::vec((value(), 0u32..3), 1..600),
            q in prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0f64..=1.0],
        ) {
            let (values, groups): (Vec<f64>, Vec<u32>) = rows.into_iter().unzip();
            let estimates = sketch_quantiles(&values, &groups, 4, q);
            for (g, estimate) in estimates.into_iter().enumerate() {
                let mine: Vec<f64> = values
                    .iter()
                    .zip(&groups)
                    .filter(|(_, h)| **h == g as u32)
                    .map(|(v, _)| *v)
                    .collect();
                if mine.is_empty() {
                    prop_assert_eq!(estimate, None);
                    continue;
                }
                let exact = exact_quantile(&mine, q);
                let estimate = estimate.unwrap();
                prop_assert!(
                    within_bound(estimate, exact),
                    "q {} of {} values: estimate {} exact {}", q, mine.len(), estimate, exact
                );
                if q == 0.0 || q == 1.0 {
                    prop_assert_eq!(estimate, exact, "the extremes are exact");
                }
            }
        }
    }

    /// Measures the error on larger data sets (printed with `--nocapture`) and checks it
    /// against the bound.
    #[test]
    fn quantile_error_on_sensor_like_data() {
        let mut rng = Rng(7);
        let shapes: [Shape; 3] = [
            (
                "uniform 15..35",
                Box::new(|r: &mut Rng| 15.0 + 20.0 * r.unit()),
            ),
            // Sum of uniforms, roughly normal around 0 (both signs).
            (
                "normal-ish around 0",
                Box::new(|r: &mut Rng| (0..12).map(|_| r.unit()).sum::<f64>() - 6.0),
            ),
            (
                "log-uniform 1e-3..1e6",
                Box::new(|r: &mut Rng| 10f64.powf(-3.0 + 9.0 * r.unit())),
            ),
        ];
        for (name, draw) in &shapes {
            let values: Vec<f64> = (0..20_000).map(|_| draw(&mut rng)).collect();
            let mut worst = 0f64;
            for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999] {
                let estimate = sketch_quantiles(&values, &vec![0; values.len()], 1, q)[0].unwrap();
                let exact = exact_quantile(&values, q);
                assert!(
                    within_bound(estimate, exact),
                    "{name} q {q}: {estimate} vs {exact}"
                );
                if exact.abs() > MIN_VALUE {
                    worst = worst.max((estimate - exact).abs() / exact.abs());
                }
            }
            println!(
                "quantile {name}: worst relative error {worst:.5} (bound {RELATIVE_ACCURACY})"
            );
        }
    }

    fn distinct(
        column: ArrayRef,
        groups: usize,
        gids: Vec<u32>,
        numeric: Option<Numeric>,
    ) -> Vec<i64> {
        let spec = spec(AggregateFunction::DistinctCount, numeric, DataType::Int64);
        let times = vec![0; column.len()];
        let out = run_batches(&spec, &[(column, times, gids)], groups);
        assert_eq!(out.null_count(), 0);
        out.as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn distinct_count_is_exact_below_the_bound_and_close_above() {
        let mut rng = Rng(11);
        for n in [1usize, 2, 17, 200, EXACT_DISTINCT] {
            // Every value three times, shuffled, split across two batches' worth of rows.
            let mut values: Vec<f64> = (0..n).flat_map(|i| [i as f64; 3]).collect();
            for i in (1..values.len()).rev() {
                values.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            let column: ArrayRef = Arc::new(Float64Array::from(values.clone()));
            assert_eq!(
                distinct(column, 1, vec![0; values.len()], Some(Numeric::Float)),
                [n as i64]
            );
        }
        let mut worst = 0f64;
        for n in [EXACT_DISTINCT + 1, 1_000, 5_000, 20_000, 100_000] {
            let values: Vec<f64> = (0..n)
                .flat_map(|_| {
                    let v = rng.unit() * 1e6;
                    [v, v]
                })
                .collect();
            let column: ArrayRef = Arc::new(Float64Array::from(values.clone()));
            let estimate = distinct(column, 1, vec![0; values.len()], Some(Numeric::Float))[0];
            let error = (estimate as f64 - n as f64).abs() / n as f64;
            println!("distinct_count of {n}: estimate {estimate}, relative error {error:.4}");
            // Three standard errors of HyperLogLog++ with 4,096 registers.
            assert!(error <= 3.0 * 1.04 / 64.0, "{n}: {estimate}");
            worst = worst.max(error);
        }
        println!("distinct_count: worst relative error {worst:.4} (standard error 0.0163)");
    }

    #[test]
    fn distinct_strings_groups_and_signed_zero() {
        let column: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            None,
            Some("a"),
            Some("c"),
            Some(""),
        ]));
        assert_eq!(distinct(column, 3, vec![0, 0, 0, 0, 1, 1], None), [2, 2, 0]);
        let column: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.0),
            Some(-0.0),
            Some(f64::NAN),
            None,
            Some(1.0),
        ]));
        assert_eq!(distinct(column, 1, vec![0; 5], Some(Numeric::Float)), [2]);
    }

    #[test]
    fn distinct_sets_switch_to_hyperloglog_past_the_bound() {
        let mut set = DistinctSet::default();
        let hasher = value_hasher();
        for i in 0..EXACT_DISTINCT as i64 {
            set.insert(hasher.hash_one(i));
        }
        assert!(matches!(set, DistinctSet::Exact(_)));
        set.insert(hasher.hash_one(-1i64));
        assert!(matches!(set, DistinctSet::Estimated(_)));
        // Small enough for the estimator's exact representation of the hashes it keeps.
        let estimate = set.count();
        assert!(
            (estimate - EXACT_DISTINCT as i64 - 1).abs() <= 8,
            "{estimate}"
        );
    }
}
