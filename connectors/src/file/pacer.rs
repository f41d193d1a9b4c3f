//! Sends a file's rows at the pace of their event time, or as fast as the pipeline takes them.
//!
//! With `speed = k`, the first row's event time is pinned to the moment it is sent, and a row
//! with event time `t` leaves `(t - first) / k` later. A batch is cut into the runs of rows
//! that are due together; rows older than the replay clock (out of order) leave at once. The
//! reader thread sleeps in short steps so a shutdown request is seen within
//! [`SLEEP_STEP`].

use std::time::{Duration, Instant};

use edgeflow_engine::SourceContext;
use edgeflow_engine::arrow::array::{Array, AsArray, RecordBatch};
use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;

use crate::schema_options::Speed;

/// Longest sleep between two checks for shutdown.
pub(crate) const SLEEP_STEP: Duration = Duration::from_millis(50);

/// Paces rows by their event time.
pub(crate) struct Pacer {
    speed: Speed,
    event_time: usize,
    /// Event time and wall-clock instant of the first row.
    origin: Option<(i64, Instant)>,
}

impl Pacer {
    /// A pacer for rows whose event time is column `event_time`.
    pub(crate) fn new(speed: Speed, event_time: usize) -> Self {
        Self {
            speed,
            event_time,
            origin: None,
        }
    }

    /// Sends `rows` through `ctx` when they are due. Returns false when the source should
    /// stop (shutdown requested, or the pipeline no longer takes rows).
    pub(crate) fn send(&mut self, rows: RecordBatch, ctx: &SourceContext) -> bool {
        let Speed::Factor(factor) = self.speed else {
            return ctx.send_blocking(rows).is_ok();
        };
        let Some(times) = rows
            .column(self.event_time)
            .as_primitive_opt::<TimestampMillisecondType>()
            .cloned()
        else {
            return ctx.send_blocking(rows).is_ok();
        };
        let mut from = 0;
        while from < rows.num_rows() {
            let now = Instant::now();
            let (origin_time, origin_wall) = *self.origin.get_or_insert_with(|| {
                let first = (from..times.len())
                    .find(|&i| times.is_valid(i))
                    .map_or(0, |i| times.value(i));
                (first, now)
            });
            let clock = origin_time as f64
                + now.saturating_duration_since(origin_wall).as_secs_f64() * 1_000.0 * factor;
            let mut to = from;
            while to < times.len() && (times.is_null(to) || times.value(to) as f64 <= clock) {
                to += 1;
            }
            if to > from {
                if ctx.send_blocking(rows.slice(from, to - from)).is_err() {
                    return false;
                }
                from = to;
                continue;
            }
            let due_in_ms = (times.value(to) as f64 - origin_time as f64) / factor;
            let wait =
                Duration::try_from_secs_f64(due_in_ms.max(0.0) / 1_000.0).unwrap_or(Duration::MAX);
            // A timestamp centuries ahead: wake hourly (and for shutdown) rather than overflow.
            let latest = now + Duration::from_secs(3_600);
            let due = origin_wall
                .checked_add(wait)
                .map_or(latest, |d| d.min(latest));
            if !sleep_until(due, ctx) {
                return false;
            }
        }
        !ctx.is_shutdown_requested()
    }
}

/// Sleeps until `due` in short steps; false if shutdown was requested meanwhile.
fn sleep_until(due: Instant, ctx: &SourceContext) -> bool {
    loop {
        if ctx.is_shutdown_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(SLEEP_STEP));
    }
}
