//! Event time, watermarks, and the duration syntax of query files.
//!
//! # How time works in edgeflow
//!
//! * **Event time** is milliseconds since the Unix epoch, UTC ([`EventTime`]). It is also the
//!   timely timestamp of every dataflow edge.
//! * A source stamps each batch it emits with its current **watermark**: the promise that it
//!   will not send rows older than that time *as on-time data*. The source's timely capability
//!   is the watermark, so the frontier an operator sees is the minimum watermark over every
//!   source and worker upstream of it.
//! * A row whose event time is below the timestamp of the batch carrying it arrived after the
//!   watermark passed it. Operators decide what that means for them: a window, for example,
//!   accepts it while the row's window is still open.
//!
//! [`WatermarkTracker`] computes a source's watermark from the event times it has seen:
//! `max_event_time - max_out_of_orderness`, never moving backwards, plus an idle rule so a silent
//! source cannot hold windows open forever.

use std::time::{Duration, Instant};

/// Milliseconds since the Unix epoch, UTC. Also the timely timestamp type.
pub type EventTime = u64;

/// Parses a query-file duration such as `"10s"`, `"250ms"`, `"1h 30m"` or `"2d"`.
///
/// # Errors
/// Returns a message quoting the input when it is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!("invalid duration '{text}': {error} (try \"10s\", \"500ms\", \"5m\")")
    })
}

/// Formats an event time as RFC 3339 UTC with milliseconds, for logs and status lines.
pub fn format_event_time(time: EventTime) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(time as i64) {
        Some(moment) => moment.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{time}ms"),
    }
}

/// Settings for a source's watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkPolicy {
    /// How far behind the largest event time seen the watermark trails.
    pub max_out_of_orderness: Duration,
    /// After this long with no new rows, the watermark advances with the wall clock as if
    /// time went on (so a silent source does not stall every window downstream). `None` keeps
    /// the watermark still until new rows arrive.
    pub idle_timeout: Option<Duration>,
}

impl Default for WatermarkPolicy {
    fn default() -> Self {
        Self {
            max_out_of_orderness: Duration::ZERO,
            idle_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Computes one source's watermark from the event times it sees.
#[derive(Debug)]
pub struct WatermarkTracker {
    policy: WatermarkPolicy,
    max_event_time: Option<EventTime>,
    watermark: EventTime,
    last_progress: Instant,
    /// Watermark at the moment the source went idle (for wall-clock advancement).
    idle_base: Option<(EventTime, Instant)>,
}

impl WatermarkTracker {
    /// A tracker that has seen nothing: its watermark is 0 (the start of time).
    pub fn new(policy: WatermarkPolicy) -> Self {
        Self {
            policy,
            max_event_time: None,
            watermark: 0,
            last_progress: Instant::now(),
            idle_base: None,
        }
    }

    /// The current watermark.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// The largest event time seen so far.
    pub fn max_event_time(&self) -> Option<EventTime> {
        self.max_event_time
    }

    /// Records that rows up to `max_event_time` arrived at `now`; returns the new watermark.
    pub fn observe(&mut self, max_event_time: EventTime, now: Instant) -> EventTime {
        self.last_progress = now;
        self.idle_base = None;
        let max = self
            .max_event_time
            .map_or(max_event_time, |m| m.max(max_event_time));
        self.max_event_time = Some(max);
        let lag = self.policy.max_out_of_orderness.as_millis() as u64;
        self.watermark = self.watermark.max(max.saturating_sub(lag));
        self.watermark
    }

    /// Moves the watermark to at least `watermark` (an explicit promise from the source);
    /// returns the new watermark. Counts as progress for the idle rule.
    pub fn advance_to(&mut self, watermark: EventTime, now: Instant) -> EventTime {
        self.last_progress = now;
        self.idle_base = None;
        self.watermark = self.watermark.max(watermark);
        self.max_event_time = Some(self.max_event_time.map_or(watermark, |m| m.max(watermark)));
        self.watermark
    }

    /// Applies the idle rule at `now`; returns the (possibly advanced) watermark.
    ///
    /// Nothing moves before the first row: with no event time seen, there is no clock to
    /// advance from.
    pub fn on_tick(&mut self, now: Instant) -> EventTime {
        let (Some(timeout), Some(_)) = (self.policy.idle_timeout, self.max_event_time) else {
            return self.watermark;
        };
        let quiet_for = now.saturating_duration_since(self.last_progress);
        if quiet_for < timeout {
            return self.watermark;
        }
        let (base, since) = *self.idle_base.get_or_insert((self.watermark, now));
        let advanced = base.saturating_add(now.saturating_duration_since(since).as_millis() as u64);
        self.watermark = self.watermark.max(advanced);
        self.watermark
    }

    /// When [`Self::on_tick`] next has something to do, measured from `now`.
    pub fn next_tick_in(&self, now: Instant) -> Option<Duration> {
        let timeout = self.policy.idle_timeout?;
        self.max_event_time?;
        if self.idle_base.is_some() {
            return Some(Duration::from_millis(200));
        }
        let quiet_for = now.saturating_duration_since(self.last_progress);
        Some(
            timeout
                .saturating_sub(quiet_for)
                .max(Duration::from_millis(10)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ooo_ms: u64, idle_ms: Option<u64>) -> WatermarkPolicy {
        WatermarkPolicy {
            max_out_of_orderness: Duration::from_millis(ooo_ms),
            idle_timeout: idle_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn watermark_trails_max_event_time_and_never_goes_back() {
        let mut tracker = WatermarkTracker::new(policy(2_000, None));
        let now = Instant::now();
        assert_eq!(tracker.observe(10_000, now), 8_000);
        assert_eq!(tracker.observe(9_000, now), 8_000);
        assert_eq!(tracker.observe(15_500, now), 13_500);
        assert_eq!(tracker.max_event_time(), Some(15_500));
    }

    #[test]
    fn idle_source_advances_with_wall_clock() {
        let mut tracker = WatermarkTracker::new(policy(1_000, Some(5_000)));
        let start = Instant::now();
        tracker.observe(100_000, start);
        assert_eq!(tracker.on_tick(start + Duration::from_secs(4)), 99_000);
        // Idle from 5 s on: the first idle tick anchors, later ticks move with the clock.
        assert_eq!(tracker.on_tick(start + Duration::from_secs(5)), 99_000);
        assert_eq!(tracker.on_tick(start + Duration::from_secs(8)), 102_000);
        // New data resets the idle rule but never moves the watermark back.
        assert_eq!(
            tracker.observe(100_500, start + Duration::from_secs(9)),
            102_000
        );
    }

    #[test]
    fn explicit_advance_moves_forward_only() {
        let mut tracker = WatermarkTracker::new(policy(1_000, None));
        let now = Instant::now();
        assert_eq!(tracker.advance_to(5_000, now), 5_000);
        assert_eq!(tracker.advance_to(4_000, now), 5_000);
        // Rows behind an explicit watermark do not pull it back.
        assert_eq!(tracker.observe(5_500, now), 5_000);
        assert_eq!(tracker.observe(9_000, now), 8_000);
    }

    #[test]
    fn no_idle_advance_before_first_row() {
        let mut tracker = WatermarkTracker::new(policy(0, Some(1)));
        assert_eq!(tracker.on_tick(Instant::now() + Duration::from_secs(60)), 0);
        assert_eq!(tracker.next_tick_in(Instant::now()), None);
    }

    #[test]
    fn durations_parse_and_errors_quote_input() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_duration(" 250ms ").unwrap(),
            Duration::from_millis(250)
        );
        let error = parse_duration("ten seconds").unwrap_err();
        assert!(error.contains("'ten seconds'"), "{error}");
    }

    #[test]
    fn event_time_formats_as_utc() {
        assert_eq!(
            format_event_time(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
