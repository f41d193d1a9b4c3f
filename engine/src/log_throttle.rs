//! A rate limit for log lines about things that can happen many times a second (bad rows,
//! windows closed early to stay under a limit), so that an unattended gateway's log shows
//! each problem and how often it happens, without flooding the disk.

use std::time::{Duration, Instant};

/// Lets one log line through per interval and counts the occurrences in between.
///
/// ```
/// use std::time::{Duration, Instant};
/// use edgeflow_engine::log_throttle::LogThrottle;
///
/// let mut throttle = LogThrottle::new(Duration::from_secs(10));
/// let start = Instant::now();
/// assert_eq!(throttle.note_at(1, start), Some(1)); // the first occurrence is logged
/// assert_eq!(throttle.note_at(5, start + Duration::from_secs(3)), None); // counted
/// // Ten seconds on, the next line reports everything since the last one.
/// assert_eq!(throttle.note_at(1, start + Duration::from_secs(10)), Some(6));
/// ```
#[derive(Debug, Clone)]
pub struct LogThrottle {
    interval: Duration,
    last_line: Option<Instant>,
    unreported: u64,
}

impl LogThrottle {
    /// The interval edgeflow's operators use: one line per problem every ten seconds.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

    /// A throttle letting one line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_line: None,
            unreported: 0,
        }
    }

    /// Notes `count` occurrences now; see [`Self::note_at`].
    pub fn note(&mut self, count: u64) -> Option<u64> {
        self.note_at(count, Instant::now())
    }

    /// Notes `count` occurrences at `now`. Returns the occurrences to report, these and
    /// the ones held back since the last line, when a line is due: on the first
    /// occurrence, then at most once per interval. `count == 0` is never reported.
    pub fn note_at(&mut self, count: u64, now: Instant) -> Option<u64> {
        self.unreported += count;
        if self.unreported == 0
            || self
                .last_line
                .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_occurrences_are_reported_with_the_next_line() {
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(throttle.note_at(0, at(0)), None, "nothing happened");
        assert_eq!(throttle.note_at(2, at(0)), Some(2));
        assert_eq!(throttle.note_at(3, at(1)), None);
        assert_eq!(throttle.note_at(4, at(9)), None);
        assert_eq!(throttle.note_at(0, at(10)), Some(7), "held back, now due");
        assert_eq!(throttle.note_at(0, at(30)), None, "nothing left to report");
        assert_eq!(
            throttle.note_at(1, at(31)),
            Some(1),
            "a new problem after quiet"
        );
    }

    #[test]
    fn a_clock_that_steps_back_does_not_panic_or_report_early() {
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now() + Duration::from_secs(100);
        assert_eq!(throttle.note_at(1, start), Some(1));
        assert_eq!(throttle.note_at(1, start - Duration::from_secs(50)), None);
    }
}
