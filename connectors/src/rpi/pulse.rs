//! Counting pulses (flow meters, anemometers, energy meters' S0 outputs) into fixed
//! wall-clock intervals, and turning each interval's count into a rate.
//!
//! Intervals are aligned to multiples of the interval since the epoch (`interval = "10s"`
//! gives `12:00:00`, `12:00:10`, …), so they nest in windows whose size is a multiple of the
//! interval. Every interval is reported, with 0 pulses when nothing came: a stopped flow is a
//! reading too. The first interval after start covers only part of its span; its rate is
//! divided by the time actually watched.

/// The counts of one interval, one per pin (in the order of the source's `pins`).
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalCounts {
    /// Start of the interval, ms since the epoch (the rows' `timestamp`).
    pub start_ms: i64,
    /// End of the interval (exclusive).
    pub end_ms: i64,
    /// Milliseconds of the interval that were watched (less than the interval for the first).
    pub watched_ms: i64,
    /// Pulses per pin.
    pub pulses: Vec<u64>,
}

impl IntervalCounts {
    /// Pulses per second of pin `index` over the watched part of the interval.
    pub fn rate_hz(&self, index: usize) -> f64 {
        if self.watched_ms <= 0 {
            return 0.0;
        }
        self.pulses[index] as f64 * 1_000.0 / self.watched_ms as f64
    }
}

/// Most empty intervals reported after a jump of the wall clock (a suspended board, a clock
/// set forward); beyond this the counter skips ahead instead of flooding the pipeline.
pub const MAX_CATCH_UP: usize = 1_000;

/// Pulse counts of the interval in progress.
#[derive(Clone, Debug)]
pub struct PulseCounter {
    interval_ms: i64,
    start_ms: i64,
    watched_from_ms: i64,
    pulses: Vec<u64>,
}

impl PulseCounter {
    /// A counter for `pins` pins with intervals of `interval_ms` (at least 1), watching
    /// from `now_ms` on.
    pub fn new(pins: usize, interval_ms: i64, now_ms: i64) -> Self {
        let interval_ms = interval_ms.max(1);
        Self {
            interval_ms,
            start_ms: now_ms.div_euclid(interval_ms) * interval_ms,
            watched_from_ms: now_ms,
            pulses: vec![0; pins],
        }
    }

    /// When the interval in progress ends (ms since the epoch).
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.interval_ms
    }

    /// Counts a pulse of pin `index` seen at `at_ms`. Closes (and returns) the intervals that
    /// ended before it; a pulse stamped before the interval in progress (the clock stepped
    /// back) counts in the interval in progress.
    pub fn record(&mut self, index: usize, at_ms: i64) -> Vec<IntervalCounts> {
        let closed = self.close_until(at_ms);
        if let Some(count) = self.pulses.get_mut(index) {
            *count += 1;
        }
        closed
    }

    /// Closes every interval that ended at or before `now_ms`, oldest first.
    pub fn close_until(&mut self, now_ms: i64) -> Vec<IntervalCounts> {
        let mut closed = Vec::new();
        while self.end_ms() <= now_ms {
            let end_ms = self.end_ms();
            let pins = self.pulses.len();
            closed.push(IntervalCounts {
                start_ms: self.start_ms,
                end_ms,
                watched_ms: end_ms - self.watched_from_ms.max(self.start_ms),
                pulses: std::mem::replace(&mut self.pulses, vec![0; pins]),
            });
            self.start_ms = end_ms;
            if closed.len() == MAX_CATCH_UP {
                // Skip the rest of the gap: start counting again in the interval of now.
                self.start_ms = now_ms.div_euclid(self.interval_ms) * self.interval_ms;
                self.watched_from_ms = now_ms;
                break;
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulses_land_in_aligned_intervals_with_rates() {
        // Start 12.5 s into a 10 s grid: the first interval [10 s, 20 s) is watched 7.5 s.
        let mut counter = PulseCounter::new(2, 10_000, 12_500);
        assert_eq!(counter.end_ms(), 20_000);
        for at in [13_000, 14_000, 15_000] {
            assert!(counter.record(0, at).is_empty());
        }
        assert!(counter.record(1, 19_999).is_empty());
        // A pulse in the next interval closes the first.
        let closed = counter.record(0, 20_000);
        assert_eq!(closed.len(), 1);
        let first = &closed[0];
        assert_eq!(
            (first.start_ms, first.end_ms, first.watched_ms),
            (10_000, 20_000, 7_500)
        );
        assert_eq!(first.pulses, [3, 1]);
        assert!((first.rate_hz(0) - 0.4).abs() < 1e-12, "3 pulses in 7.5 s");
        // Nothing more until 50 s: the intervals in between report zero pulses.
        let closed = counter.close_until(50_000);
        let starts: Vec<i64> = closed.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, [20_000, 30_000, 40_000]);
        assert_eq!(closed[0].pulses, [1, 0]);
        assert_eq!(closed[0].watched_ms, 10_000);
        assert!((closed[0].rate_hz(0) - 0.1).abs() < 1e-12);
        assert_eq!(closed[1].pulses, [0, 0]);
        assert_eq!(closed[1].rate_hz(1), 0.0);
        assert!(counter.close_until(59_999).is_empty());
    }

    #[test]
    fn a_pulse_from_before_the_interval_counts_in_the_current_one() {
        let mut counter = PulseCounter::new(1, 1_000, 5_000);
        assert!(counter.record(0, 4_000).is_empty());
        let closed = counter.close_until(6_000);
        assert_eq!(closed[0].pulses, [1]);
        // An index outside the pins is ignored rather than a panic.
        assert!(counter.record(7, 6_100).is_empty());
    }

    #[test]
    fn a_clock_jump_reports_at_most_max_catch_up_intervals_then_skips_ahead() {
        let mut counter = PulseCounter::new(1, 1_000, 0);
        let closed = counter.close_until(10_000_000);
        assert_eq!(closed.len(), MAX_CATCH_UP);
        assert_eq!(counter.end_ms(), 10_001_000);
        assert!(counter.close_until(10_000_999).is_empty());
        let closed = counter.close_until(10_001_000);
        assert_eq!(closed[0].watched_ms, 1_000);
    }
}
