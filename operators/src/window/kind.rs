//! Window kinds as planned from the options ([`WindowKind`]), and [`Alignment`], which places
//! tumbling and hopping windows on the time line: aligned to the Unix epoch, shifted by an
//! offset, or to the calendar of a time zone.
//!
//! Tumbling windows are hopping windows whose slide equals their size. A hopping window starts
//! at every multiple of `slide` (plus the offset) and lasts `size`, so each row belongs to
//! `size / slide` windows.
//!
//! With a time zone, sizes below a day align to the zone's *standard* offset, so every window
//! keeps its nominal length across daylight-saving changes (hourly windows are the zone's
//! local hours). Sizes of whole days run from local midnight to local midnight, so the day the
//! clocks change has a 23- or 25-hour window.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::{OffsetComponents, Tz};

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// What kind of window, with its parameters in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WindowKind {
    /// Tumbling and hopping windows: fixed windows placed by an [`Alignment`].
    Aligned(Alignment),
    /// One window per row, over the `size_ms` before it (`(t - size, t]`), per key.
    Sliding {
        /// Length of the window ending at each row.
        size_ms: i64,
    },
    /// Per key, a window that closes after `gap_ms` without an event.
    Session {
        /// Silence that ends a session.
        gap_ms: i64,
        /// Longest a session may last; the next event then starts a new one.
        max_length_ms: Option<i64>,
    },
    /// Per key, a window of every `events` events in event-time order.
    Count {
        /// Events per window.
        events: u64,
    },
}

/// Where tumbling and hopping windows start and end.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Alignment {
    /// Window length (nominal, for whole-day windows in a zone).
    pub size_ms: i64,
    /// Distance between window starts; equal to `size_ms` for tumbling windows.
    pub slide_ms: i64,
    /// Shift of window starts from the epoch, or from local midnight.
    pub offset_ms: i64,
    /// The time zone of calendar alignment.
    pub zone: Option<Tz>,
}

impl Alignment {
    /// Epoch-aligned windows of `size_ms`, starting every `slide_ms`.
    #[cfg(test)]
    pub(crate) fn fixed(size_ms: i64, slide_ms: i64) -> Self {
        Self {
            size_ms,
            slide_ms,
            offset_ms: 0,
            zone: None,
        }
    }

    /// Whether windows follow local days (a zone and a size of whole days).
    fn calendar_days(&self) -> Option<i64> {
        (self.zone.is_some() && self.size_ms % DAY_MS == 0).then_some(self.size_ms / DAY_MS)
    }

    /// The shift of window starts from the epoch, in UTC: the offset plus, in a zone, its
    /// standard offset from UTC.
    fn shift(&self) -> i64 {
        let standard = self.zone.map_or(0, |zone| {
            let offset = zone.offset_from_utc_datetime(&DateTime::UNIX_EPOCH.naive_utc());
            offset.base_utc_offset().num_milliseconds()
        });
        self.offset_ms - standard
    }

    /// The start of the latest window that contains `time`.
    pub(crate) fn latest_start(&self, time: i64) -> i64 {
        if let (Some(days), Some(zone)) = (self.calendar_days(), self.zone) {
            return self.day_start(zone, time, days);
        }
        let shift = self.shift();
        time - (time - shift).rem_euclid(self.slide_ms)
    }

    /// The end (exclusive) of the window starting at `start`.
    pub(crate) fn end(&self, start: i64) -> i64 {
        if let (Some(days), Some(zone)) = (self.calendar_days(), self.zone) {
            return local_midnight_after(zone, start, days);
        }
        start.saturating_add(self.size_ms)
    }

    /// The start of the window after the one starting at `start`.
    pub(crate) fn next_start(&self, start: i64) -> i64 {
        if self.calendar_days().is_some() {
            return self.end(start);
        }
        start.saturating_add(self.slide_ms)
    }

    /// Calls `f(start)` for every window containing `time`, earliest first.
    pub(crate) fn for_each_window(&self, time: i64, mut f: impl FnMut(i64)) {
        let latest = self.latest_start(time);
        if self.calendar_days().is_some() || self.slide_ms == self.size_ms {
            f(latest);
            return;
        }
        let mut start = latest;
        let mut count = 0;
        while start > time - self.size_ms {
            start -= self.slide_ms;
            count += 1;
        }
        for k in (0..count).rev() {
            f(latest - k * self.slide_ms);
        }
    }

    /// The end of the earliest window containing `time`.
    #[cfg(test)]
    pub(crate) fn first_end(&self, time: i64) -> i64 {
        let mut first = None;
        self.for_each_window(time, |start| {
            first.get_or_insert(start);
        });
        self.end(first.expect("every time is in at least one window"))
    }

    /// The smallest time whose earliest window ends after `bound`: rows before it belong only
    /// to windows that ended at or before `bound`.
    pub(crate) fn on_time_from(&self, bound: i64) -> i64 {
        if self.calendar_days().is_some() || self.slide_ms == self.size_ms {
            return self.latest_start(bound);
        }
        // The first hopping window ending after `bound` starts one slide after the latest
        // start at or before `bound - size`; a row is in it (or a later one) from one size
        // after that start on.
        self.latest_start(bound.saturating_sub(self.size_ms)) + self.size_ms
    }

    /// The start of the `days`-day window in `zone` holding `time`: the local midnight (plus
    /// offset) on a day number that is a multiple of `days` since 1970-01-01.
    fn day_start(&self, zone: Tz, time: i64, days: i64) -> i64 {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(time) else {
            return time;
        };
        let local =
            utc.with_timezone(&zone).naive_local() - chrono::Duration::milliseconds(self.offset_ms);
        let day = i64::from(local.date().num_days_from_ce() - EPOCH_DAY);
        let first = day - day.rem_euclid(days);
        let start = local_time_of_day(zone, first, self.offset_ms);
        if start > time {
            // Only around a clock change at the window boundary: step back one window.
            local_time_of_day(zone, first - days, self.offset_ms)
        } else {
            start
        }
    }
}

/// Day number of 1970-01-01 counted from the common era.
const EPOCH_DAY: i32 = 719_163;

/// UTC milliseconds of local time `offset_ms` after midnight on day `day` (since 1970-01-01)
/// in `zone`; a local time skipped by a clock change maps to the first instant after the gap.
fn local_time_of_day(zone: Tz, day: i64, offset_ms: i64) -> i64 {
    let date = NaiveDate::from_num_days_from_ce_opt(EPOCH_DAY + day as i32)
        .unwrap_or(NaiveDate::MIN)
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    let wanted: NaiveDateTime = date + chrono::Duration::milliseconds(offset_ms);
    // Try the local time, then each following minute, for a time skipped by a clock change.
    for minutes in 0..=180 {
        let candidate = wanted + chrono::Duration::minutes(minutes);
        if let Some(instant) = zone.from_local_datetime(&candidate).earliest() {
            return instant.timestamp_millis();
        }
    }
    wanted.and_utc().timestamp_millis()
}

/// The end of the `days`-day calendar window starting at `start` in `zone`.
fn local_midnight_after(zone: Tz, start: i64, days: i64) -> i64 {
    let Some(utc) = DateTime::<Utc>::from_timestamp_millis(start) else {
        return start.saturating_add(days * DAY_MS);
    };
    let local = utc.with_timezone(&zone).naive_local();
    let time_of_day = local.time();
    let date = local
        .date()
        .checked_add_days(Days::new(days as u64))
        .unwrap_or(NaiveDate::MAX);
    let day = i64::from(date.num_days_from_ce() - EPOCH_DAY);
    let offset_ms = i64::from(time_of_day.num_seconds_from_midnight_ms());
    local_time_of_day(zone, day, offset_ms)
}

/// Milliseconds since midnight of a local time.
trait MillisOfDay {
    fn num_seconds_from_midnight_ms(&self) -> i32;
}

impl MillisOfDay for chrono::NaiveTime {
    fn num_seconds_from_midnight_ms(&self) -> i32 {
        use chrono::Timelike;
        (self.num_seconds_from_midnight() * 1000 + self.nanosecond() / 1_000_000) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn windows(alignment: &Alignment, time: i64) -> Vec<(i64, i64)> {
        let mut found = Vec::new();
        alignment.for_each_window(time, |start| found.push((start, alignment.end(start))));
        found
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch_and_offset() {
        let tumbling = Alignment::fixed(10, 10);
        assert_eq!(windows(&tumbling, 25), [(20, 30)]);
        assert_eq!(windows(&tumbling, -1), [(-10, 0)]);
        assert_eq!(tumbling.on_time_from(25), 20);
        let shifted = Alignment {
            offset_ms: 3,
            ..tumbling
        };
        assert_eq!(windows(&shifted, 25), [(23, 33)]);
        assert_eq!(windows(&shifted, 22), [(13, 23)]);
    }

    #[test]
    fn hopping_windows_cover_each_time_size_over_slide_times() {
        let hopping = Alignment::fixed(60, 10);
        assert_eq!(
            windows(&hopping, 65),
            [
                (10, 70),
                (20, 80),
                (30, 90),
                (40, 100),
                (50, 110),
                (60, 120)
            ]
        );
        assert_eq!(hopping.first_end(65), 70);
        assert_eq!(hopping.first_end(70), 80);
        // Rows before 70 are in a window ending at or before 75.
        assert_eq!(hopping.on_time_from(75), 70);
        for time in 0..200 {
            for bound in 0..200 {
                assert_eq!(
                    hopping.first_end(time) > bound,
                    time >= hopping.on_time_from(bound),
                    "time {time}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn daily_windows_follow_local_midnight_across_dst() {
        let berlin = Alignment {
            zone: Some(chrono_tz::Europe::Berlin),
            ..Alignment::fixed(DAY_MS, DAY_MS)
        };
        // 2024-03-31: clocks go from 02:00 to 03:00, a 23-hour day.
        let spring = windows(&berlin, ms("2024-03-31T12:00:00+02:00"));
        assert_eq!(
            spring,
            [(
                ms("2024-03-31T00:00:00+01:00"),
                ms("2024-04-01T00:00:00+02:00")
            )]
        );
        assert_eq!(spring[0].1 - spring[0].0, 23 * 3_600_000);
        // 2024-10-27: clocks go from 03:00 back to 02:00, a 25-hour day.
        let autumn = windows(&berlin, ms("2024-10-27T23:59:59+01:00"));
        assert_eq!(autumn[0].1 - autumn[0].0, 25 * 3_600_000);
        assert_eq!(autumn[0].0, ms("2024-10-27T00:00:00+02:00"));
        // Just before local midnight belongs to the day before.
        let before = windows(&berlin, ms("2024-10-27T23:59:59.999+01:00"));
        assert_eq!(before[0].1, ms("2024-10-28T00:00:00+01:00"));
        assert_eq!(berlin.next_start(before[0].0), before[0].1);
        assert_eq!(
            berlin.on_time_from(ms("2024-10-27T05:00:00+01:00")),
            autumn[0].0
        );
    }

    #[test]
    fn hourly_windows_in_a_half_hour_zone_are_local_hours() {
        let kolkata = Alignment {
            zone: Some(chrono_tz::Asia::Kolkata),
            ..Alignment::fixed(3_600_000, 3_600_000)
        };
        let found = windows(&kolkata, ms("2024-06-01T10:45:00+05:30"));
        assert_eq!(
            found,
            [(
                ms("2024-06-01T10:00:00+05:30"),
                ms("2024-06-01T11:00:00+05:30")
            )]
        );
        // Across a DST change, hourly windows in Berlin stay one hour long and on the hour.
        let berlin = Alignment {
            zone: Some(chrono_tz::Europe::Berlin),
            ..Alignment::fixed(3_600_000, 3_600_000)
        };
        let found = windows(&berlin, ms("2024-03-31T03:30:00+02:00"));
        assert_eq!(found[0].0, ms("2024-03-31T03:00:00+02:00"));
        assert_eq!(found[0].1 - found[0].0, 3_600_000);
    }

    #[test]
    fn every_time_is_in_its_windows() {
        let berlin_week = Alignment {
            zone: Some(chrono_tz::Europe::Berlin),
            offset_ms: 6 * 3_600_000,
            ..Alignment::fixed(2 * DAY_MS, 2 * DAY_MS)
        };
        let base = ms("2024-03-25T00:00:00Z");
        for hour in 0..24 * 30 {
            let time = base + hour * 3_600_000 + 17;
            let found = windows(&berlin_week, time);
            assert_eq!(found.len(), 1);
            let (start, end) = found[0];
            assert!(start <= time && time < end, "{time}: {start}..{end}");
            assert_eq!(berlin_week.latest_start(end), end, "windows tile the line");
        }
    }
}
