//! Unit tests of the ordered windows: buffering, late rows, closing on the watermark, slot
//! reuse and what sliding windows retain.

use super::*;
use crate::window::WindowConfig;
use edgeflow_engine::arrow::array::{
    AsArray, Float64Array, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, SchemaRef, TimestampMillisecondType,
};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use proptest::prelude::*;

fn input() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("temperature", DataType::Float64, true),
        ],
        Some("ts"),
    )
}

fn windows(kind: &str) -> OrderedWindows {
    let text = format!(
        "{kind}\ngroup_by = [\"device_id\"]\n\
         aggregates = {{ n = \"count()\", hi = \"max(temperature)\", q = \"sum(1 / temperature)\" }}"
    );
    let config: WindowConfig = edgeflow_engine::parse_options(text.parse().unwrap()).unwrap();
    OrderedWindows::new(Arc::new(config.plan_window(&[input()]).unwrap())).unwrap()
}

fn batch(rows: &[(Option<&str>, Option<i64>, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<StringArray>()),
            Arc::new(
                rows.iter()
                    .map(|r| r.1)
                    .collect::<TimestampMillisecondArray>()
                    .with_timezone(UTC),
            ),
            Arc::new(rows.iter().map(|r| Some(r.2)).collect::<Float64Array>()),
        ],
    )
    .unwrap()
}

/// `(start, end, key, n)` of each output row, in output order.
fn summary(rows: Option<RecordBatch>) -> Vec<(i64, i64, Option<String>, i64)> {
    let Some(rows) = rows else {
        return Vec::new();
    };
    let time = |c: usize| {
        rows.column(c)
            .as_primitive::<TimestampMillisecondType>()
            .clone()
    };
    let (starts, ends) = (time(0), time(1));
    let keys = rows.column(2).as_string::<i32>();
    let n = rows.column(3).as_primitive::<Int64Type>();
    (0..rows.num_rows())
        .map(|r| {
            let key = keys.is_valid(r).then(|| keys.value(r).to_string());
            (starts.value(r), ends.value(r), key, n.value(r))
        })
        .collect()
}

#[test]
fn late_and_timeless_rows_are_split_off_and_the_rest_waits_for_the_watermark() {
    let mut windows = windows("kind = \"session\"\ngap = \"10ms\"");
    let absorbed = windows
        .absorb(
            &batch(&[
                (Some("a"), Some(4), 1.0),
                (Some("a"), Some(12), 2.0),
                (Some("b"), None, 3.0),
                (None, Some(20), 0.0),
            ]),
            5,
        )
        .unwrap();
    assert_eq!(
        (absorbed.on_time, absorbed.late, absorbed.missing_time),
        (2, 1, 1)
    );
    let late = absorbed.late_rows.unwrap();
    assert_eq!(late.num_rows(), 1);
    assert_eq!(
        late.column(1)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        4
    );
    assert_eq!(windows.state_rows(), 2);
    assert!(windows.needs_capability());
    // Nothing below 12 is buffered; the rows stay buffered until the watermark passes them.
    assert_eq!(summary(windows.advance(Some(12)).unwrap()), []);
    assert_eq!(windows.state_rows(), 2);
    // At 21, both rows have been fed to sessions; a's ends at 22, the null key's at 30.
    assert_eq!(summary(windows.advance(Some(21)).unwrap()), []);
    // 1 / 0 is a division by zero: counted once, when the row is fed.
    assert_eq!(windows.expression_errors(), [0, 0, 1]);
    assert_eq!(windows.state_rows(), 2);
    assert_eq!(
        summary(windows.advance(Some(22)).unwrap()),
        [(12, 22, Some("a".into()), 1)]
    );
    assert_eq!(windows.expression_errors(), [0, 0, 0]);
    assert_eq!(summary(windows.advance(None).unwrap()), [(20, 30, None, 1)]);
    assert_eq!(windows.state_rows(), 0);
    assert_eq!(windows.state_bytes(), 0);
    assert!(!windows.needs_capability());
}

#[test]
fn slots_of_closed_windows_are_reused_and_keys_keep_their_values() {
    let mut windows = windows("kind = \"count\"\ncount = 2");
    let mut emitted = Vec::new();
    for step in 0..50i64 {
        let key = ["x", "y", "z"][(step % 3) as usize];
        windows
            .absorb(&batch(&[(Some(key), Some(step), 1.0)]), step as u64)
            .unwrap();
        emitted.extend(summary(windows.advance(Some(step as u64 + 1)).unwrap()));
    }
    let KindState::Count { open, .. } = &windows.state else {
        unreachable!()
    };
    assert!(open.slots <= 3, "{} slots for 3 keys", open.slots);
    assert!(windows.state_bytes() > 0);
    emitted.extend(summary(windows.advance(None).unwrap()));
    assert_eq!(windows.state_bytes(), 0);
    // 17 rows of x, 17 of y and 16 of z: 9 + 9 + 8 windows, the last of x and y partial.
    assert_eq!(emitted.len(), 26);
    assert_eq!(emitted.iter().map(|w| w.3).sum::<i64>(), 50);
    assert!(emitted.iter().all(|w| (w.1 - w.0) == 3 || w.3 == 1));
    assert_eq!(
        emitted[emitted.len() - 2..],
        [(48, 48, Some("x".into()), 1), (49, 49, Some("y".into()), 1)]
    );
}

#[test]
fn sliding_windows_keep_only_the_rows_later_windows_can_reach() {
    let mut windows = windows("kind = \"sliding\"\nsize = \"10ms\"");
    for t in [0, 5, 9, 14, 30] {
        windows
            .absorb(&batch(&[(Some("a"), Some(t), 1.0)]), t as u64)
            .unwrap();
    }
    let out = summary(windows.advance(Some(20)).unwrap());
    assert_eq!(
        out,
        [
            (-10, 0, Some("a".into()), 1),
            (-5, 5, Some("a".into()), 2),
            (-1, 9, Some("a".into()), 3),
            (4, 14, Some("a".into()), 3),
        ]
    );
    // Rows after 20 - 10 = 10 are kept (14), plus the buffered row at 30.
    assert_eq!(windows.state_rows(), 2);
    assert!(windows.needs_capability());
    assert_eq!(
        summary(windows.advance(None).unwrap()),
        [(20, 30, Some("a".into()), 1)]
    );
    assert_eq!(windows.state_rows(), 0);
}

/// `(start, end, key, n, hi)` of an output row, `hi` as bits.
type Row = (i64, i64, Option<String>, i64, Option<u64>);

/// Every output row, sorted.
fn all_rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for rows in batches {
        let hi = rows.column(4).as_primitive::<Float64Type>();
        for (r, (start, end, key, n)) in summary(Some(rows.clone())).into_iter().enumerate() {
            let hi = hi.is_valid(r).then(|| hi.value(r).to_bits());
            out.push((start, end, key, n, hi));
        }
    }
    out.sort();
    out
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 200,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0DE7_0ED0),
        ..proptest::test_runner::Config::default()
    })]

    /// Flushing whenever the watermark moves gives the rows one flush at the end of input
    /// gives (which the integration tests compare with an oracle), so sessions, count
    /// windows and retained sliding rows carry over between flushes correctly.
    #[test]
    fn flushing_at_every_watermark_matches_one_flush_at_the_end(
        steps in proptest::collection::vec(
            (
                proptest::collection::vec(
                    (proptest::option::weighted(0.9, 0u8..3), 0i64..30, 0i64..25, -5.0f64..5.0),
                    0..12,
                ),
                proptest::bool::weighted(0.7),
            ),
            1..15,
        ),
        ooo in 0i64..20,
        kind in proptest::prop_oneof![
            (1i64..25, proptest::option::of(1i64..40)).prop_map(|(gap, max)| format!(
                "kind = \"session\"\ngap = \"{gap}ms\"\n{}",
                max.map_or(String::new(), |m| format!("max_length = \"{m}ms\""))
            )),
            (1i64..30).prop_map(|size| format!("kind = \"sliding\"\nsize = \"{size}ms\"")),
            (1u64..5).prop_map(|count| format!("kind = \"count\"\ncount = {count}")),
        ],
    ) {
        let keys = ["a", "b", "c"];
        let mut batches = Vec::new();
        let mut stamps = Vec::new();
        let (mut watermark, mut max_seen) = (0i64, i64::MIN);
        for (index, (rows, _)) in steps.iter().enumerate() {
            let rows: Vec<(Option<&str>, Option<i64>, f64)> = rows
                .iter()
                .map(|&(key, offset, jitter, t)| {
                    let ts = (index as i64 * 10 + offset - jitter).max(0);
                    (key.map(|k| keys[k as usize]), Some(ts), t)
                })
                .collect();
            stamps.push(watermark as u64);
            max_seen = max_seen.max(rows.iter().filter_map(|r| r.1).max().unwrap_or(i64::MIN));
            watermark = watermark.max(max_seen.saturating_sub(ooo));
            batches.push(batch(&rows));
        }
        stamps.push(watermark as u64);

        let mut stepwise = windows(&kind);
        let mut out = Vec::new();
        for (index, rows) in batches.iter().enumerate() {
            stepwise.absorb(rows, stamps[index]).unwrap();
            if steps[index].1 {
                out.extend(stepwise.advance(Some(stamps[index + 1])).unwrap());
            }
        }
        out.extend(stepwise.advance(None).unwrap());
        prop_assert_eq!(stepwise.state_rows(), 0);
        for rows in &out {
            let rows = summary(Some(rows.clone()));
            for pair in rows.windows(2) {
                prop_assert!((pair[0].0, &pair[0].2) <= (pair[1].0, &pair[1].2), "{:?}", pair);
            }
        }

        let mut at_once = windows(&kind);
        for (index, rows) in batches.iter().enumerate() {
            at_once.absorb(rows, stamps[index]).unwrap();
        }
        let once: Vec<RecordBatch> = at_once.advance(None).unwrap().into_iter().collect();
        prop_assert_eq!(all_rows(&out), all_rows(&once));
    }
}

#[test]
fn shedding_keys_forgets_idle_ones_and_closes_the_most_idle_windows() {
    for kind in [
        "kind = \"session\"\ngap = \"100ms\"",
        "kind = \"count\"\ncount = 5",
    ] {
        let mut windows = windows(kind);
        windows
            .absorb(
                &batch(&[
                    (Some("a"), Some(0), 1.0),
                    (Some("b"), Some(1), 1.0),
                    (Some("c"), Some(2), 1.0),
                    (Some("d"), Some(3), 1.0),
                ]),
                0,
            )
            .unwrap();
        assert_eq!(summary(windows.advance(Some(10)).unwrap()), []);
        assert_eq!(windows.keys_held(), 4);
        // Two keys may stay: a and b, the most idle, have their windows closed early.
        let (rows, evicted, forgotten) = windows.shed_keys(2).unwrap();
        let closed = summary(rows);
        let keys: Vec<_> = closed.iter().map(|r| (r.0, r.2.clone(), r.3)).collect();
        assert_eq!(
            keys,
            [(0, Some("a".into()), 1), (1, Some("b".into()), 1)],
            "{kind}"
        );
        assert_eq!((evicted, forgotten), (2, 2));
        assert_eq!(windows.keys_held(), 2);
        // c and d keep their state under new ids; a comes back as a new key.
        windows
            .absorb(
                &batch(&[(Some("d"), Some(20), 1.0), (Some("a"), Some(21), 1.0)]),
                10,
            )
            .unwrap();
        let rest = summary(windows.advance(None).unwrap());
        let rest: Vec<_> = rest.iter().map(|r| (r.0, r.2.clone(), r.3)).collect();
        assert_eq!(
            rest,
            [
                (2, Some("c".into()), 1),
                (3, Some("d".into()), 2),
                (21, Some("a".into()), 1)
            ],
            "{kind}"
        );
    }
}

#[test]
fn shedding_sliding_keys_keeps_those_with_retained_rows() {
    let mut windows = windows("kind = \"sliding\"\nsize = \"10ms\"");
    windows
        .absorb(
            &batch(&[(Some("a"), Some(0), 1.0), (Some("b"), Some(30), 1.0)]),
            0,
        )
        .unwrap();
    assert_eq!(summary(windows.advance(Some(35)).unwrap()).len(), 2);
    // a's row is older than the window size: a is idle; b's row is still retained.
    let (rows, evicted, forgotten) = windows.shed_keys(1).unwrap();
    assert!(rows.is_none());
    assert_eq!((evicted, forgotten, windows.keys_held()), (0, 1, 1));
    windows
        .absorb(&batch(&[(Some("b"), Some(36), 1.0)]), 35)
        .unwrap();
    let rest = summary(windows.advance(None).unwrap());
    // b's window at 36 still sees its row at 30.
    assert_eq!(rest, [(26, 36, Some("b".into()), 2)]);
}
