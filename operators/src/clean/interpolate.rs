//! `fill` with `method = "linear"`: interpolation between a key's reading before a missing
//! value and the next one, which may not have arrived yet.
//!
//! # Semantics
//!
//! Rows are taken per key in arrival order, like every per-key rule; readings are placed by
//! their event time. For a row whose value is missing, at event time `t`:
//!
//! * a remembered reading at `t` itself gives its value at once;
//! * if the row is older than the key's latest reading (it arrived late), it is interpolated
//!   at once between the key's two latest readings when they enclose `t` and both lie within
//!   `max_gap` of it, and is left unfilled otherwise;
//! * if the key's latest reading is older than `t` by at most `max_gap`, the row is **held**
//!   until a reading at or after `t` arrives: within `max_gap` after `t`, the row is filled
//!   with the straight line between the key's latest reading before `t` and that one; further,
//!   it leaves unfilled. A reading between the two (earlier than `t`) only moves the start of
//!   the line closer;
//! * otherwise (no reading of the key within `max_gap` before `t`) it is unfilled at once.
//!
//! A held row that no reading resolves leaves unfilled once the watermark passes
//! `t + max_gap` (or the input ends). Held rows keep the timestamp (watermark) of the batch
//! that brought them, and the operator keeps that capability until they leave, so that rows
//! downstream are exactly as late or on time as they would be without the wait: the output
//! frontier lags by up to `max_gap` while rows are held.
//!
//! Per key and field at most `max_held` rows are held; one more makes the oldest held row
//! leave unfilled at once (counted as `unfilled` and as `fill_overflow`). With `max_keys` keys
//! per worker, this bounds the rows held.

/// A row held by a `linear` fill of one key, waiting for the next reading.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    /// The ticket of the held row.
    pub(crate) ticket: u64,
    /// Its event time.
    pub(crate) time: i64,
}

/// The value a held row gets for one `linear` fill, once known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Resolution {
    /// The held row.
    pub(crate) ticket: u64,
    /// The index of the fill rule.
    pub(crate) rule: usize,
    /// The interpolated value, or `None` when it is left unfilled.
    pub(crate) value: Option<f64>,
}

/// What to do at once with a missing value at `time`, given the key's latest readings
/// (oldest first, by event time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    /// Filled now with this value (`None`: left unfilled).
    Now(Option<f64>),
    /// Held until a later reading arrives or the watermark passes `time + max_gap`.
    Hold,
}

/// Decides about a missing value at `time` from the key's latest readings (at most two, oldest
/// first). See the module docs for the rules.
pub(crate) fn decide(history: &[(i64, f64)], time: i64, max_gap: i64, integer: bool) -> Decision {
    let near = |then: i64| (time - then).abs() <= max_gap;
    if let Some(&(_, value)) = history.iter().rev().find(|(then, _)| *then == time) {
        return Decision::Now(Some(value));
    }
    let Some(&(latest, _)) = history.last() else {
        return Decision::Now(None);
    };
    if latest < time {
        return if near(latest) {
            Decision::Hold
        } else {
            Decision::Now(None)
        };
    }
    // A late row: between the two latest readings, or nowhere.
    let after = history.partition_point(|&(then, _)| then < time);
    match (after.checked_sub(1).map(|i| history[i]), history.get(after)) {
        (Some(before), Some(next)) if near(before.0) && near(next.0) => {
            Decision::Now(Some(between(before, *next, time, integer)))
        }
        _ => Decision::Now(None),
    }
}

/// The value at `time` on the straight line through `before` and `after`
/// (`before.0 <= time <= after.0`), rounded for integer fields.
pub(crate) fn between(before: (i64, f64), after: (i64, f64), time: i64, integer: bool) -> f64 {
    let (t0, v0) = before;
    let (t1, v1) = after;
    let value = if t1 == t0 {
        v1
    } else {
        v0 + (v1 - v0) * (time - t0) as f64 / (t1 - t0) as f64
    };
    if integer { value.round() } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_are_held_filled_or_left_by_the_rules() {
        let h = [(1_000, 10.0), (3_000, 30.0)];
        // The same time as a reading: its value.
        assert_eq!(decide(&h, 3_000, 500, false), Decision::Now(Some(30.0)));
        // After the latest reading, within max_gap: wait for the next one.
        assert_eq!(decide(&h, 3_400, 500, false), Decision::Hold);
        // Too far after: nothing near enough to start the line from.
        assert_eq!(decide(&h, 3_600, 500, false), Decision::Now(None));
        // Late, between the two latest readings and near both.
        assert_eq!(decide(&h, 2_500, 2_000, false), Decision::Now(Some(25.0)));
        assert_eq!(decide(&h, 2_500, 1_000, false), Decision::Now(None));
        // Late, before both: not enclosed.
        assert_eq!(decide(&h, 500, 5_000, false), Decision::Now(None));
        assert_eq!(decide(&[], 500, 5_000, false), Decision::Now(None));
    }

    #[test]
    fn the_line_is_exact_at_its_ends_and_rounded_for_integers() {
        assert_eq!(between((0, 1.0), (4, 3.0), 0, false), 1.0);
        assert_eq!(between((0, 1.0), (4, 3.0), 4, false), 3.0);
        assert_eq!(between((0, 1.0), (4, 3.0), 1, false), 1.5);
        assert_eq!(between((0, 1.0), (4, 3.0), 1, true), 2.0);
        assert_eq!(between((5, 1.0), (5, 3.0), 5, false), 3.0);
    }
}
