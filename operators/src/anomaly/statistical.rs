//! The distribution methods: `zscore` (rolling mean and standard deviation), `ewma`
//! (exponentially weighted mean and variance, an EWMA control chart with L-sigma limits) and
//! `mad` (rolling median and median absolute deviation, a robust z-score).
//!
//! Each compares the new value with the state *before* it, then adds it, so a spike does not
//! mask itself. The score is `|z| / (|z| + threshold)` (see [`super::stats::ratio_score`]):
//! 0.5 at the threshold.

use super::detector::Verdict;
use super::options::{Direction, Span};
use super::stats::{Rolling, SortedWindow, ratio_score, spread_floor};

/// "above" or "below".
pub(crate) fn side(delta: f64) -> &'static str {
    if delta >= 0.0 { "above" } else { "below" }
}

/// A z-like deviation turned into a verdict, with its reason built only for anomalies.
pub(crate) fn deviation_verdict(
    z: f64,
    threshold: f64,
    direction: Direction,
    reason: impl FnOnce() -> String,
) -> Verdict {
    if !direction.admits(z) {
        return Verdict::normal(0.0);
    }
    let score = ratio_score(z.abs(), threshold);
    if z.abs() >= threshold {
        Verdict::anomaly(score, reason())
    } else {
        Verdict::normal(score)
    }
}

/// `zscore` state: the window's values and moments.
#[derive(Clone, Debug)]
pub(crate) struct ZScore {
    window: Rolling,
}

impl ZScore {
    pub(crate) fn new(span: &Span) -> Self {
        Self {
            window: Rolling::new(span.events, span.age),
        }
    }

    pub(crate) fn observe(
        &mut self,
        span: &Span,
        threshold: f64,
        direction: Direction,
        time: i64,
        value: f64,
    ) -> Verdict {
        self.window.expire(time, |_| {});
        let verdict = if self.window.len() >= 2 {
            let mean = self.window.mean();
            let std = spread_floor(self.window.std(), mean);
            let z = (value - mean) / std;
            deviation_verdict(z, threshold, direction, || {
                format!(
                    "value {} is {:.1}σ {} the mean {} of {}",
                    num(value),
                    z.abs(),
                    side(z),
                    num(mean),
                    span.describe()
                )
            })
        } else {
            Verdict::normal(0.0)
        };
        self.window.push(time, value);
        verdict
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.window.heap_bytes()
    }
}

/// `ewma` state: the weighted mean and variance.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ewma {
    mean: f64,
    variance: f64,
    seen: u64,
}

impl Ewma {
    pub(crate) fn observe(
        &mut self,
        alpha: f64,
        threshold: f64,
        direction: Direction,
        value: f64,
    ) -> Verdict {
        self.seen += 1;
        if self.seen == 1 {
            self.mean = value;
            return Verdict::normal(0.0);
        }
        let diff = value - self.mean;
        let std = spread_floor(self.variance.sqrt(), self.mean);
        let z = diff / std;
        let verdict = if self.seen > 2 {
            deviation_verdict(z, threshold, direction, || {
                format!(
                    "value {} is {:.1}σ {} the weighted mean {} (alpha {alpha})",
                    num(value),
                    z.abs(),
                    side(z),
                    num(self.mean)
                )
            })
        } else {
            Verdict::normal(0.0)
        };
        let increment = alpha * diff;
        self.mean += increment;
        self.variance = (1.0 - alpha) * (self.variance + diff * increment);
        verdict
    }
}

/// `mad` state: the window's values in arrival order and sorted.
#[derive(Clone, Debug)]
pub(crate) struct Mad {
    window: Rolling,
    sorted: SortedWindow,
}

/// Scales a MAD to a standard deviation for normal data (1 / Φ⁻¹(3/4)).
const MAD_TO_SIGMA: f64 = 1.4826;

/// Scales a mean absolute deviation to a standard deviation for normal data (√(π/2)).
const MEAN_AD_TO_SIGMA: f64 = 1.2533;

impl Mad {
    pub(crate) fn new(span: &Span) -> Self {
        Self {
            window: Rolling::new(span.events, span.age),
            sorted: SortedWindow::default(),
        }
    }

    pub(crate) fn observe(
        &mut self,
        span: &Span,
        threshold: f64,
        direction: Direction,
        time: i64,
        value: f64,
    ) -> Verdict {
        let sorted = &mut self.sorted;
        self.window.expire(time, |old| sorted.remove(old));
        let verdict = if self.sorted.len() >= 2 {
            let median = self.sorted.median();
            let mad = self.sorted.mad(median);
            // With more than half the window equal the MAD is 0; the mean absolute deviation
            // (scaled to σ for normal data) then keeps every other change from scoring 1.
            let spread = if mad > 0.0 {
                MAD_TO_SIGMA * mad
            } else {
                MEAN_AD_TO_SIGMA * self.sorted.mean_abs_deviation(median)
            };
            let z = (value - median) / spread_floor(spread, median);
            deviation_verdict(z, threshold, direction, || {
                format!(
                    "value {} is {:.1} robust σ {} the median {} of {} (MAD {})",
                    num(value),
                    z.abs(),
                    side(z),
                    num(median),
                    span.describe(),
                    num(mad)
                )
            })
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

/// A number for a reason: up to 4 significant digits, no trailing zeros.
pub(crate) fn num(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 6) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A duration in ms as a short text: `10m`, `90s`, `1h30m`, `250ms`.
pub(crate) fn humanize_ms(ms: i64) -> String {
    if ms % 1000 != 0 || ms == 0 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_flags_a_spike_with_a_reason() {
        let span = Span {
            events: 10,
            age: None,
        };
        let mut z = ZScore::new(&span);
        for (i, v) in [20.0, 21.0, 20.0, 21.0, 20.0, 21.0].into_iter().enumerate() {
            assert!(!z.observe(&span, 3.0, Direction::Both, i as i64, v).anomaly);
        }
        let v = z.observe(&span, 3.0, Direction::Both, 9, 30.0);
        assert!(v.anomaly);
        assert!(v.score > 0.85);
        assert_eq!(
            v.reason.as_deref(),
            Some("value 30 is 17.3σ above the mean 20.5 of the last 10 rows")
        );
        // Only dips count: the same spike is not an anomaly.
        let mut z = ZScore::new(&span);
        for (i, v) in [20.0, 21.0, 20.0, 21.0].into_iter().enumerate() {
            z.observe(&span, 3.0, Direction::Down, i as i64, v);
        }
        assert!(!z.observe(&span, 3.0, Direction::Down, 9, 30.0).anomaly);
    }

    #[test]
    fn mad_ignores_a_single_outlier_in_its_window() {
        let span = Span {
            events: 9,
            age: None,
        };
        let mut m = Mad::new(&span);
        for (i, v) in [10.0, 11.0, 10.0, 500.0, 11.0, 10.0, 11.0]
            .into_iter()
            .enumerate()
        {
            m.observe(&span, 3.5, Direction::Both, i as i64, v);
        }
        // The earlier 500 barely moves the median or the MAD.
        let v = m.observe(&span, 3.5, Direction::Both, 7, 20.0);
        assert!(v.anomaly, "{v:?}");
        let v = m.observe(&span, 3.5, Direction::Both, 8, 10.5);
        assert!(!v.anomaly, "{v:?}");
    }

    #[test]
    fn ewma_tracks_a_slow_drift_and_flags_a_jump() {
        let mut e = Ewma::default();
        for i in 0..200 {
            let v = 20.0 + 0.01 * i as f64 + if i % 2 == 0 { 0.1 } else { -0.1 };
            assert!(!e.observe(0.1, 3.0, Direction::Both, v).anomaly, "row {i}");
        }
        assert!(e.observe(0.1, 3.0, Direction::Both, 25.0).anomaly);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(21.4), "21.4");
        assert_eq!(num(93.123_456), "93.12");
        assert_eq!(num(0.001_234_6), "0.001235");
        assert_eq!(num(12_345.6), "12346");
    }
}
