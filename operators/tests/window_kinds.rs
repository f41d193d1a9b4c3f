//! Session, sliding and count windows inside an engine run: small scenarios worked out by
//! hand, and proptests that check seeded random input (duplicates, disorder, late rows, null
//! keys and values) against from-scratch oracles on 1 and 2 workers.

use std::collections::BTreeMap;
use std::time::Duration;

use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::testing::run_collect;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use crate::util::{Reading, Value, batch, plan, rows, sensor_schema};

fn policy(ooo_ms: u64) -> WatermarkPolicy {
    WatermarkPolicy {
        max_out_of_orderness: Duration::from_millis(ooo_ms),
        idle_timeout: None,
    }
}

/// Runs `batches` through one window on 1 and 2 workers; checks that both agree, that each
/// output batch is sorted by (`window_start`, keys) and that no state is left; returns the
/// rows (sorted) and the operator's report of the 1-worker run.
fn run(
    options: &str,
    batches: &[RecordBatch],
    ooo: u64,
    keys: usize,
) -> (Vec<Vec<Value>>, edgeflow_engine::NodeSnapshot) {
    let schema = sensor_schema();
    let window = plan("window", options, &schema);
    let mut results = Vec::new();
    for workers in [1, 2] {
        let (out, report) = run_collect(
            schema.clone(),
            batches.to_vec(),
            policy(ooo),
            vec![window.clone()],
            workers,
        )
        .unwrap();
        assert_sorted_by_start_and_key(&out, keys);
        let node = report.nodes.into_iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.state_rows, 0, "state left after the end of input");
        let mut got = rows(&out);
        got.sort();
        results.push((got, node));
    }
    let (two, _) = results.pop().unwrap();
    let (one, node) = results.pop().unwrap();
    assert!(
        same(&one, &two),
        "1 and 2 workers differ:\n{one:?}\n{two:?}"
    );
    (one, node)
}

/// Rows within each batch are ordered by (`window_start`, the `keys` key columns).
fn assert_sorted_by_start_and_key(batches: &[RecordBatch], keys: usize) {
    for batch in batches {
        let rows = rows(std::slice::from_ref(batch));
        for pair in rows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let sort_key = |r: &Vec<Value>| (r[0].clone(), r[2..2 + keys].to_vec());
            assert!(sort_key(a) <= sort_key(b), "rows out of order: {pair:?}");
        }
    }
}

fn same(got: &[Vec<Value>], expected: &[Vec<Value>]) -> bool {
    got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(g, e)| g.len() == e.len() && g.iter().zip(e).all(|(a, b)| a.close_to(b)))
}

fn reading(device: &str, ts: i64, temperature: f64) -> Reading {
    Reading::new(device, ts, Some(temperature))
}

fn row(start: i64, end: i64, device: &str, n: i64, sum: f64) -> Vec<Value> {
    vec![
        Value::Int(start),
        Value::Int(end),
        Value::Str(device.into()),
        Value::Int(n),
        Value::Float(sum),
    ]
}

const SMALL: &str =
    "group_by = [\"device_id\"]\naggregates = { n = \"count()\", s = \"sum(temperature)\" }";

#[test]
fn sessions_close_after_the_gap_and_at_max_length() {
    // a: 0, 3, 5 | 20 (gap 10 passed) | b: 1, 9, 17, 25, 33 (one session without max_length).
    let batches = [
        batch(&[
            reading("a", 3, 1.0),
            reading("b", 1, 10.0),
            reading("a", 0, 2.0),
            reading("b", 9, 20.0),
        ]),
        batch(&[
            reading("a", 5, 4.0),
            reading("b", 17, 30.0),
            reading("a", 20, 8.0),
        ]),
        batch(&[reading("b", 25, 40.0), reading("b", 33, 50.0)]),
    ];
    let (got, node) = run(
        &format!("kind = \"session\"\ngap = \"10ms\"\n{SMALL}"),
        &batches,
        5,
        1,
    );
    assert_eq!(
        got,
        [
            row(0, 15, "a", 3, 7.0),
            row(1, 43, "b", 5, 150.0),
            row(20, 30, "a", 1, 8.0),
        ]
    );
    assert_eq!((node.rows_in, node.rows_out), (9, 3));
    assert_eq!(node.dropped_total(), 0);

    // With max_length 20, b's session [1, 21) closes before 25, which starts the next one.
    let (got, _) = run(
        &format!("kind = \"session\"\ngap = \"10ms\"\nmax_length = \"20ms\"\n{SMALL}"),
        &batches,
        5,
        1,
    );
    assert_eq!(
        got,
        [
            row(0, 15, "a", 3, 7.0),
            row(1, 21, "b", 3, 60.0),
            row(20, 30, "a", 1, 8.0),
            row(25, 43, "b", 2, 90.0),
        ]
    );
}

#[test]
fn count_windows_follow_event_time_and_emit_the_rest_at_the_end() {
    // a arrives as 4, 1, 3, 2, 5 but is counted as 1, 2, 3 | 4, 5 (the end of input).
    let batches = [
        batch(&[reading("a", 4, 4.0), reading("a", 1, 1.0)]),
        batch(&[reading("a", 3, 3.0), reading("b", 2, 7.0)]),
        batch(&[reading("a", 2, 2.0), reading("a", 5, 5.0)]),
    ];
    let (got, node) = run(
        &format!("kind = \"count\"\ncount = 3\n{SMALL}"),
        &batches,
        10,
        1,
    );
    assert_eq!(
        got,
        [
            row(1, 3, "a", 3, 6.0),
            row(2, 2, "b", 1, 7.0),
            row(4, 5, "a", 2, 9.0),
        ]
    );
    assert_eq!(node.rows_out, 3);
}

#[test]
fn sliding_windows_give_one_row_per_event_and_late_rows_are_counted() {
    // Watermark 30 - 2 = 28 for the second batch: the row at 27 is late.
    let batches = [
        batch(&[
            reading("a", 10, 1.0),
            reading("a", 30, 4.0),
            reading("a", 15, 2.0),
            reading("b", 12, 5.0),
        ]),
        batch(&[
            reading("a", 27, 100.0),
            reading("a", 28, 8.0),
            reading("a", 30, 16.0),
        ]),
    ];
    let (got, node) = run(
        &format!("kind = \"sliding\"\nsize = \"15ms\"\n{SMALL}"),
        &batches,
        2,
        1,
    );
    assert_eq!(
        got,
        [
            row(-5, 10, "a", 1, 1.0),
            row(-3, 12, "b", 1, 5.0),
            row(0, 15, "a", 2, 3.0),
            // (13, 28]: 15 and 28.
            row(13, 28, "a", 2, 10.0),
            // (15, 30]: 28, 30 and 30, once for each of the two rows at 30.
            row(15, 30, "a", 3, 28.0),
            row(15, 30, "a", 3, 28.0),
        ]
    );
    assert_eq!(node.dropped.get("late"), Some(&1));
    assert_eq!((node.rows_in, node.rows_out), (7, 6));
}

#[test]
fn ordered_kinds_follow_event_time_only() {
    let window = edgeflow_operators::operators()
        .iter()
        .find(|k| k.name == "window")
        .unwrap();
    for kind in [
        "kind = \"session\"\ngap = \"1s\"",
        "kind = \"sliding\"\nsize = \"1s\"",
        "kind = \"count\"\ncount = 10",
    ] {
        let options = format!("{kind}\ntime = \"processing\"\n{SMALL}");
        let config = (window.parse)(options.parse().unwrap()).unwrap();
        let errors = config.plan(&[sensor_schema()]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, ["time"]);
        assert!(
            errors[0].message.contains("event time only"),
            "{}",
            errors[0].message
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Oracle

const AGGREGATES: &str = "n = \"count()\", n_t = \"count(temperature)\", \
    s = \"sum(temperature)\", lo = \"min(temperature)\", hi = \"max(level)\", \
    avg = \"mean(level)\", hot = \"count_if(temperature > 30)\", \
    r = \"count(100 / (level % 7))\", f = \"first(level)\", l = \"last(level)\"";

/// The group keys of each grouping mode the proptests draw from.
const GROUPINGS: [&[&str]; 4] = [&[], &["device_id"], &["zone"], &["device_id", "flag"]];

fn key_of(reading: &Reading, keys: &[&str]) -> Vec<Value> {
    keys.iter()
        .map(|&key| match key {
            "device_id" => reading.device.clone().map_or(Value::Null, Value::Str),
            "zone" => reading.zone.map_or(Value::Null, |z| Value::Int(z.into())),
            "flag" => Value::Bool(reading.flag),
            other => unreachable!("{other}"),
        })
        .collect()
}

/// The aggregates of `AGGREGATES` over `rows`, computed directly.
fn aggregates(rows: &[&Reading]) -> Vec<Value> {
    let temps: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.temperature)
        .filter(|t| !t.is_nan())
        .collect();
    let levels: Vec<i64> = rows.iter().filter_map(|r| r.level).collect();
    let opt_f = |v: Option<f64>| v.map_or(Value::Null, Value::Float);
    vec![
        Value::Int(rows.len() as i64),
        Value::Int(temps.len() as i64),
        opt_f((!temps.is_empty()).then(|| temps.iter().sum())),
        opt_f(temps.iter().copied().reduce(f64::min)),
        levels.iter().copied().max().map_or(Value::Null, Value::Int),
        opt_f(
            (!levels.is_empty()).then(|| levels.iter().sum::<i64>() as f64 / levels.len() as f64),
        ),
        // NaN is above every number in Arrow's comparison.
        Value::Int(
            rows.iter()
                .filter_map(|r| r.temperature)
                .filter(|t| t.is_nan() || *t > 30.0)
                .count() as i64,
        ),
        Value::Int(levels.iter().filter(|l| *l % 7 != 0).count() as i64),
        // Rows come sorted by time, equal times in arrival order.
        levels.first().copied().map_or(Value::Null, Value::Int),
        levels.last().copied().map_or(Value::Null, Value::Int),
    ]
}

/// What the oracle computes for one kind.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Session { gap: i64, max_length: Option<i64> },
    Sliding { size: i64 },
    Count { events: usize },
}

impl Kind {
    fn options(self) -> String {
        match self {
            Kind::Session { gap, max_length } => {
                let max = max_length.map_or(String::new(), |m| format!("max_length = \"{m}ms\"\n"));
                format!("kind = \"session\"\ngap = \"{gap}ms\"\n{max}")
            }
            Kind::Sliding { size } => format!("kind = \"sliding\"\nsize = \"{size}ms\"\n"),
            Kind::Count { events } => format!("kind = \"count\"\ncount = {events}\n"),
        }
    }

    /// `(start, end, rows)` of every window of one key's rows, sorted by time (ties in
    /// arrival order).
    fn windows<'a>(self, rows: &[&'a Reading]) -> Vec<(i64, i64, Vec<&'a Reading>)> {
        let mut out = Vec::new();
        match self {
            Kind::Session { gap, max_length } => {
                let mut current: Vec<&Reading> = Vec::new();
                let end = |current: &[&Reading]| {
                    let (first, last) = (current[0].ts, current[current.len() - 1].ts);
                    max_length.map_or(last + gap, |m| (last + gap).min(first + m))
                };
                for &row in rows {
                    if !current.is_empty() && row.ts >= end(&current) {
                        out.push((current[0].ts, end(&current), std::mem::take(&mut current)));
                    }
                    current.push(row);
                }
                if !current.is_empty() {
                    out.push((current[0].ts, end(&current), current));
                }
            }
            Kind::Sliding { size } => {
                for row in rows {
                    let inside: Vec<&Reading> = rows
                        .iter()
                        .copied()
                        .filter(|r| r.ts > row.ts - size && r.ts <= row.ts)
                        .collect();
                    out.push((row.ts - size, row.ts, inside));
                }
            }
            Kind::Count { events } => {
                for chunk in rows.chunks(events) {
                    out.push((chunk[0].ts, chunk[chunk.len() - 1].ts, chunk.to_vec()));
                }
            }
        }
        out
    }
}

/// Output rows (sorted), late rows and expression errors, from scratch: batch `i` carries
/// watermark `max(0, max event time of batches 0..i - ooo)`; a row below it is late. Each
/// key's on-time rows, stably sorted by time, are cut into windows by `kind`.
fn oracle(
    batches: &[Vec<Reading>],
    ooo: i64,
    keys: &[&str],
    kind: Kind,
) -> (Vec<Vec<Value>>, u64, u64) {
    let mut by_key: BTreeMap<Vec<Value>, Vec<&Reading>> = BTreeMap::new();
    let (mut watermark, mut max_seen, mut late, mut errors) = (0i64, i64::MIN, 0u64, 0u64);
    for readings in batches {
        for reading in readings {
            if reading.ts < watermark {
                late += 1;
                continue;
            }
            by_key
                .entry(key_of(reading, keys))
                .or_default()
                .push(reading);
            errors += u64::from(reading.level.is_some_and(|l| l % 7 == 0));
        }
        max_seen = max_seen.max(readings.iter().map(|r| r.ts).max().unwrap());
        watermark = watermark.max(max_seen - ooo);
    }
    let mut out = Vec::new();
    for (key, mut rows) in by_key {
        rows.sort_by_key(|r| r.ts);
        for (start, end, inside) in kind.windows(&rows) {
            let mut row = vec![Value::Int(start), Value::Int(end)];
            row.extend(key.iter().cloned());
            row.extend(aggregates(&inside));
            out.push(row);
        }
    }
    out.sort();
    (out, late, errors)
}

/// A row drawn relative to its batch: `(device, zone, flag, offset, jitter, temperature,
/// level, duplicate)`.
type RawRow = (
    Option<u8>,
    Option<i32>,
    bool,
    i64,
    i64,
    Option<f64>,
    Option<i64>,
    bool,
);

fn raw_row() -> impl Strategy<Value = RawRow> {
    (
        prop::option::weighted(0.9, 0u8..4),
        prop::option::weighted(0.9, -1i32..2),
        any::<bool>(),
        0i64..40,
        prop_oneof![8 => 0i64..15, 1 => 0i64..200],
        prop_oneof![
            6 => (-50.0f64..150.0).prop_map(Some),
            1 => Just(None),
            1 => Just(Some(f64::NAN)),
        ],
        prop::option::weighted(0.8, -1_000i64..1_000),
        prop::bool::weighted(0.15),
    )
}

fn readings(raw: &[Vec<RawRow>]) -> Vec<Vec<Reading>> {
    raw.iter()
        .enumerate()
        .map(|(index, rows)| {
            let mut out = Vec::new();
            for &(device, zone, flag, offset, jitter, temperature, level, duplicate) in rows {
                let reading = Reading {
                    device: device.map(|d| format!("device-{d}")),
                    zone,
                    flag,
                    ts: (index as i64 * 25 + offset - jitter).max(0),
                    temperature,
                    level,
                };
                if duplicate {
                    out.push(reading.clone());
                }
                out.push(reading);
            }
            out
        })
        .collect()
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..40, prop::option::of(1i64..80))
            .prop_map(|(gap, max_length)| Kind::Session { gap, max_length }),
        (1i64..60).prop_map(|size| Kind::Sliding { size }),
        (1usize..6).prop_map(|events| Kind::Count { events }),
    ]
}

fn check(raw: &[Vec<RawRow>], ooo: i64, grouping: usize, kind: Kind) -> Result<(), TestCaseError> {
    let keys = GROUPINGS[grouping];
    let options = format!(
        "{}group_by = {keys:?}\naggregates = {{ {AGGREGATES} }}",
        kind.options()
    );
    let readings = readings(raw);
    let batches: Vec<RecordBatch> = readings.iter().map(|r| batch(r)).collect();
    let (expected, late, errors) = oracle(&readings, ooo, keys, kind);
    let total: usize = readings.iter().map(Vec::len).sum();
    let (got, node) = run(&options, &batches, ooo as u64, keys.len());
    prop_assert_eq!(node.rows_in, total as u64);
    prop_assert_eq!(node.dropped.get("late").copied().unwrap_or(0), late);
    prop_assert_eq!(
        node.dropped.get("expression_error").copied().unwrap_or(0),
        errors
    );
    prop_assert_eq!(node.rows_out, expected.len() as u64);
    prop_assert!(
        same(&got, &expected),
        "rows differ for {:?}:\n  got      {:?}\n  expected {:?}",
        kind,
        got,
        expected
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 60,
        rng_seed: RngSeed::Fixed(0x5E55_1075),
        ..ProptestConfig::default()
    })]

    #[test]
    fn window_kinds_match_oracle_on_one_and_two_workers(
        raw in prop::collection::vec(prop::collection::vec(raw_row(), 1..25), 1..10),
        ooo in 0i64..40,
        grouping in 0usize..GROUPINGS.len(),
        kind in kind(),
    ) {
        check(&raw, ooo, grouping, kind)?;
    }
}
