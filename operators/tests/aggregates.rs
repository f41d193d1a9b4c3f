//! Every window aggregate end to end: seeded random input with duplicates, disorder, late
//! rows, nulls and NaN runs through a tumbling `window` on 1 and 2 workers, and each output
//! cell is checked against a from-scratch oracle that knows nothing of the accumulators
//! (it keeps every row of a group and computes each function from its definition).
//!
//! Exact functions must match to 1e-9 relative (sums may be reassociated); `median` and
//! `quantile` must be within their documented bound (1% relative, 1e-9 absolute) of the
//! exact order statistic; `distinct_count` must be exact, as groups here stay under its
//! exact bound of 256 values. Fixed scenarios then pin a few results worked out by hand.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::testing::run_collect;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use crate::util::{Reading, Value, batch, plan, rows, sensor_schema};

/// Every function at least once, over floats, ints, strings and bools, fields and
/// expressions; `(output name, aggregate)`, in output order.
const AGGREGATES: [(&str, &str); 28] = [
    ("n", "count()"),
    ("t_first", "first(temperature)"),
    ("t_last", "last(temperature)"),
    ("d_first", "first(device_id)"),
    ("d_last", "last(device_id)"),
    ("z_first", "first(zone)"),
    ("f_last", "last(flag)"),
    ("t2_first", "first(temperature * 2)"),
    ("t_min_at", "min_at(temperature)"),
    ("t_max_at", "max_at(temperature)"),
    ("l_min_at", "min_by_time(level)"),
    ("l_max_at", "max_by_time(level)"),
    ("t_sd", "stddev(temperature)"),
    ("t_var", "variance(temperature)"),
    ("t_sd_pop", "stddev_pop(temperature)"),
    ("l_var_pop", "var_pop(level)"),
    ("t_median", "median(temperature)"),
    ("l_p90", "quantile(level, 0.9)"),
    ("t_p0", "quantile(temperature, 0)"),
    ("l_distinct", "distinct_count(level)"),
    ("d_distinct", "distinct_count(device_id)"),
    ("l_rate", "rate(level)"),
    ("l_increase", "increase(level)"),
    ("l2_increase", "increase(level * 2)"),
    ("t_twm", "time_weighted_mean(temperature)"),
    ("t_twm_lin", "time_weighted_mean(temperature, 'linear')"),
    ("l_integral", "integral(level)"),
    ("t_integral_lin", "integral(temperature, 'linear')"),
];

fn policy(ooo_ms: u64) -> WatermarkPolicy {
    WatermarkPolicy {
        max_out_of_orderness: Duration::from_millis(ooo_ms),
        idle_timeout: None,
    }
}

fn options(size: i64, keys: &[&str]) -> String {
    let aggregates: Vec<String> = AGGREGATES
        .iter()
        .map(|(name, text)| format!("{name} = {text:?}"))
        .collect();
    format!(
        "kind = \"tumbling\"\nsize = \"{size}ms\"\ngroup_by = {keys:?}\naggregates = {{ {} }}",
        aggregates.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// Oracle

/// What an output cell must be.
#[derive(Clone, Debug)]
enum Expected {
    /// Equal (floats to 1e-9 relative).
    Exactly(Value),
    /// A sketch's estimate of this exact value: within 1% relative or 1e-9 absolute.
    Near(f64),
}

impl Expected {
    fn accepts(&self, got: &Value) -> bool {
        match (self, got) {
            (Expected::Exactly(expected), got) => got.close_to(expected),
            (Expected::Near(exact), Value::Float(estimate)) => {
                (estimate - exact).abs() <= 0.01 * exact.abs() * (1.0 + 1e-9) + 1e-9
            }
            (Expected::Near(_), _) => false,
        }
    }
}

fn float(value: Option<f64>) -> Expected {
    Expected::Exactly(value.map_or(Value::Null, Value::Float))
}

fn int(value: Option<i64>) -> Expected {
    Expected::Exactly(value.map_or(Value::Null, Value::Int))
}

/// `(event time, value)` of the rows with a value, in arrival order.
type Samples<T> = Vec<(i64, T)>;

/// The sample sorted by time, equal times in arrival order.
fn by_time<T: Clone>(samples: &Samples<T>) -> Samples<T> {
    let mut sorted = samples.clone();
    sorted.sort_by_key(|(t, _)| *t);
    sorted
}

fn first<T: Clone>(samples: &Samples<T>) -> Option<T> {
    by_time(samples).first().map(|(_, v)| v.clone())
}

fn last<T: Clone>(samples: &Samples<T>) -> Option<T> {
    by_time(samples).last().map(|(_, v)| v.clone())
}

/// The earliest time of the smallest (`max` false) or largest value.
fn extreme_at(samples: &Samples<f64>, max: bool) -> Option<i64> {
    let extreme = samples
        .iter()
        .map(|(_, v)| *v)
        .reduce(|a, b| if max { a.max(b) } else { a.min(b) })?;
    samples
        .iter()
        .filter(|(_, v)| *v == extreme)
        .map(|(t, _)| *t)
        .min()
}

/// Two-pass variance with `ddof` (1 sample, 0 population).
fn variance(values: &[f64], ddof: usize) -> Option<f64> {
    if values.len() <= ddof {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    Some(squares / (values.len() - ddof) as f64)
}

fn order_statistic(values: &[f64], q: f64) -> Expected {
    if values.is_empty() {
        return float(None);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Expected::Near(sorted[(q * (sorted.len() as f64 - 1.0)) as usize])
}

fn increase(samples: &Samples<f64>) -> Option<f64> {
    let sorted = by_time(samples);
    if sorted.len() < 2 {
        return None;
    }
    let mut total = 0.0;
    for pair in sorted.windows(2) {
        let (before, after) = (pair[0].1, pair[1].1);
        // A drop is a counter reset: the counter restarted from 0.
        total += if after < before {
            after
        } else {
            after - before
        };
    }
    Some(total)
}

fn span_seconds(samples: &Samples<f64>) -> Option<f64> {
    let sorted = by_time(samples);
    Some((sorted.last()?.0 - sorted.first()?.0) as f64 / 1000.0)
}

fn rate(samples: &Samples<f64>) -> Option<f64> {
    let span = span_seconds(samples)?;
    increase(samples).filter(|_| span > 0.0).map(|i| i / span)
}

fn integral(samples: &Samples<f64>, linear: bool) -> Option<f64> {
    let sorted = by_time(samples);
    if sorted.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for pair in sorted.windows(2) {
        let seconds = (pair[1].0 - pair[0].0) as f64 / 1000.0;
        let height = if linear {
            (pair[0].1 + pair[1].1) / 2.0
        } else {
            pair[0].1
        };
        total += height * seconds;
    }
    Some(total)
}

fn time_weighted_mean(samples: &Samples<f64>, linear: bool) -> Option<f64> {
    let span = span_seconds(samples)?;
    integral(samples, linear)
        .filter(|_| span > 0.0)
        .map(|i| i / span)
}

fn distinct<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> Expected {
    int(Some(values.collect::<HashSet<T>>().len() as i64))
}

/// The expected cells of one group, from its on-time rows in arrival order.
fn expected_cells(readings: &[&Reading]) -> Vec<Expected> {
    let temps: Samples<f64> = readings
        .iter()
        .filter_map(|r| r.temperature.filter(|t| !t.is_nan()).map(|t| (r.ts, t)))
        .collect();
    let levels: Samples<f64> = readings
        .iter()
        .filter_map(|r| r.level.map(|l| (r.ts, l as f64)))
        .collect();
    let devices: Samples<String> = readings
        .iter()
        .filter_map(|r| r.device.clone().map(|d| (r.ts, d)))
        .collect();
    let zones: Samples<i64> = readings
        .iter()
        .filter_map(|r| r.zone.map(|z| (r.ts, i64::from(z))))
        .collect();
    let flags: Samples<bool> = readings.iter().map(|r| (r.ts, r.flag)).collect();
    let temp_values: Vec<f64> = temps.iter().map(|(_, t)| *t).collect();
    let level_values: Vec<f64> = levels.iter().map(|(_, l)| *l).collect();
    let doubled: Samples<f64> = levels.iter().map(|(t, l)| (*t, l * 2.0)).collect();
    let string = |v: Option<String>| Expected::Exactly(v.map_or(Value::Null, Value::Str));
    vec![
        int(Some(readings.len() as i64)),
        float(first(&temps)),
        float(last(&temps)),
        string(first(&devices)),
        string(last(&devices)),
        int(first(&zones)),
        Expected::Exactly(last(&flags).map_or(Value::Null, Value::Bool)),
        float(first(&temps).map(|t| t * 2.0)),
        int(extreme_at(&temps, false)),
        int(extreme_at(&temps, true)),
        int(extreme_at(&levels, false)),
        int(extreme_at(&levels, true)),
        float(variance(&temp_values, 1).map(f64::sqrt)),
        float(variance(&temp_values, 1)),
        float(variance(&temp_values, 0).map(f64::sqrt)),
        float(variance(&level_values, 0)),
        order_statistic(&temp_values, 0.5),
        order_statistic(&level_values, 0.9),
        order_statistic(&temp_values, 0.0),
        distinct(levels.iter().map(|(_, l)| *l as i64)),
        distinct(devices.iter().map(|(_, d)| d.clone())),
        float(rate(&levels)),
        float(increase(&levels)),
        float(increase(&doubled)),
        float(time_weighted_mean(&temps, false)),
        float(time_weighted_mean(&temps, true)),
        float(integral(&levels, false)),
        float(integral(&temps, true)),
    ]
}

fn key_of(reading: &Reading, keys: &[&str]) -> Vec<Value> {
    keys.iter()
        .map(|&key| match key {
            "device_id" => reading.device.clone().map_or(Value::Null, Value::Str),
            "zone" => reading.zone.map_or(Value::Null, |z| Value::Int(z.into())),
            other => unreachable!("{other}"),
        })
        .collect()
}

/// A row's window start, end and keys, and what its aggregates must be.
type ExpectedRow = (Vec<Value>, Vec<Expected>);

/// The expected rows (window start, end, keys, then cells), sorted, and the number of late
/// rows: batch `i` carries watermark `max(0, max event time of batches 0..i − ooo)`, and a row
/// whose window ended at or before it is late.
fn oracle(batches: &[Vec<Reading>], size: i64, ooo: i64, keys: &[&str]) -> (Vec<ExpectedRow>, u64) {
    let mut groups: BTreeMap<(i64, Vec<Value>), Vec<&Reading>> = BTreeMap::new();
    let (mut watermark, mut max_seen, mut late) = (0i64, i64::MIN, 0u64);
    for readings in batches {
        for reading in readings {
            let start = reading.ts - reading.ts.rem_euclid(size);
            if start + size <= watermark {
                late += 1;
                continue;
            }
            groups
                .entry((start, key_of(reading, keys)))
                .or_default()
                .push(reading);
        }
        max_seen = max_seen.max(readings.iter().map(|r| r.ts).max().unwrap_or(0));
        watermark = watermark.max(max_seen - ooo);
    }
    let rows = groups
        .into_iter()
        .map(|((start, key), readings)| {
            let mut id = vec![Value::Int(start), Value::Int(start + size)];
            id.extend(key);
            (id, expected_cells(&readings))
        })
        .collect();
    (rows, late)
}

// ---------------------------------------------------------------------------------------------
// Random input

/// `(device, zone, flag, offset, jitter, temperature, level, duplicate)`, relative to its
/// batch.
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
        prop::option::weighted(0.9, 0i32..3),
        any::<bool>(),
        0i64..40,
        prop_oneof![8 => 0i64..15, 1 => 0i64..200],
        prop_oneof![
            4 => (-50.0f64..150.0).prop_map(Some),
            // Few distinct values, so that extremes tie at different times.
            2 => (0i32..4).prop_map(|t| Some(f64::from(t))),
            1 => Just(None),
            1 => Just(Some(f64::NAN)),
        ],
        // A counter that mostly grows and sometimes resets.
        prop::option::weighted(0.85, prop_oneof![6 => 0i64..1_000, 1 => 0i64..5]),
        prop::bool::weighted(0.1),
    )
}

/// Batch `i` holds rows around `25·i` ms, some far behind (late or in older windows), some
/// twice (same time, same values).
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

const GROUPINGS: [&[&str]; 3] = [&[], &["device_id"], &["zone"]];

/// Runs the window on 1 and 2 workers and checks every cell against the oracle.
fn check(
    batches: &[Vec<Reading>],
    size: i64,
    ooo: i64,
    keys: &[&str],
) -> Result<(), TestCaseError> {
    let schema = sensor_schema();
    let window = plan("window", &options(size, keys), &schema);
    let (expected, late) = oracle(batches, size, ooo, keys);
    let record_batches: Vec<RecordBatch> = batches.iter().map(|r| batch(r)).collect();
    let id_len = 2 + keys.len();
    for workers in [1, 2] {
        let (out, report) = run_collect(
            schema.clone(),
            record_batches.clone(),
            policy(ooo as u64),
            vec![window.clone()],
            workers,
        )
        .unwrap();
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        prop_assert_eq!(node.dropped.get("late").copied().unwrap_or(0), late);
        let mut got = rows(&out);
        got.sort_by(|a, b| a[..id_len].cmp(&b[..id_len]));
        prop_assert_eq!(
            got.len(),
            expected.len(),
            "row counts differ ({} workers)",
            workers
        );
        for (row, (id, cells)) in got.iter().zip(&expected) {
            prop_assert_eq!(&row[..id_len], &id[..], "window and key");
            prop_assert_eq!(row.len(), id_len + cells.len());
            for ((name, text), (cell, want)) in
                AGGREGATES.iter().zip(row[id_len..].iter().zip(cells))
            {
                prop_assert!(
                    want.accepts(cell),
                    "{} = {}: got {:?}, expected {:?} ({} workers, group {:?})",
                    name,
                    text,
                    cell,
                    want,
                    workers,
                    id
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: RngSeed::Fixed(0x0A66_2E6A_07E5),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_aggregate_matches_the_oracle_on_one_and_two_workers(
        raw in prop::collection::vec(prop::collection::vec(raw_row(), 1..30), 1..9),
        size in prop::sample::select(vec![10i64, 25, 100]),
        ooo in 0i64..40,
        grouping in 0usize..GROUPINGS.len(),
    ) {
        check(&readings(&raw), size, ooo, GROUPINGS[grouping])?;
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed scenarios

fn level(ts: i64, level: i64) -> Reading {
    Reading {
        level: Some(level),
        ..Reading::new("a", ts, Some(level as f64))
    }
}

/// Runs `aggregates` over one 1-minute tumbling window of device "a" and returns its cells.
fn one_window(aggregates: &str, batches: Vec<Vec<Reading>>) -> Vec<Value> {
    let schema = sensor_schema();
    let window = plan(
        "window",
        &format!(
            "kind = \"tumbling\"\nsize = \"1m\"\ngroup_by = [\"device_id\"]\n\
             aggregates = {{ {aggregates} }}"
        ),
        &schema,
    );
    let batches: Vec<RecordBatch> = batches.iter().map(|b| batch(b)).collect();
    let (out, _) = run_collect(schema, batches, policy(60_000), vec![window], 1).unwrap();
    let mut rows = rows(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0).split_off(3)
}

#[test]
fn a_counter_with_a_reset_delivered_out_of_order() {
    // A counter sampled every 10 s: 100, 110, 130, 160, reset, 5, 25; the last two batches
    // arrive before the middle one.
    let batches = vec![
        vec![level(0, 100), level(10_000, 110)],
        vec![level(40_000, 5), level(50_000, 25)],
        vec![level(30_000, 160), level(20_000, 130)],
    ];
    let cells = one_window(
        "inc = \"increase(level)\", r = \"rate(level)\", f = \"first(level)\", \
         l = \"last(level)\", hi_at = \"max_at(level)\"",
        batches,
    );
    assert_eq!(
        cells,
        [
            Value::Float(85.0),
            Value::Float(85.0 / 50.0),
            Value::Int(100),
            Value::Int(25),
            Value::Int(30_000),
        ]
    );
}

#[test]
fn step_and_linear_time_weighting() {
    // 10 for 2 s, 20 for 1 s, then 30: over the 3 s between the first and last sample.
    let batches = vec![vec![level(2_000, 20), level(3_000, 30)], vec![level(0, 10)]];
    let cells = one_window(
        "step = \"time_weighted_mean(temperature)\", \
         linear = \"time_weighted_mean(temperature, 'linear')\", \
         area = \"integral(temperature)\", area_linear = \"integral(temperature, 'linear')\"",
        batches,
    );
    assert_eq!(
        cells,
        [
            Value::Float(40.0 / 3.0),
            Value::Float(55.0 / 3.0),
            Value::Float(40.0),
            Value::Float(55.0),
        ]
    );
}

#[test]
fn spread_quantiles_and_distinct_values() {
    let batches = vec![(1..=100).map(|i| level(i * 100, i % 10)).collect()];
    let cells = one_window(
        "sd = \"stddev_pop(level)\", med = \"median(level)\", p0 = \"quantile(level, 0)\", \
         p1 = \"quantile(level, 1)\", distinct = \"distinct_count(level)\"",
        batches,
    );
    // 0..=9 ten times each: population variance (10² − 1)/12 = 8.25.
    assert!(
        Value::Float(8.25f64.sqrt()).close_to(&cells[0]),
        "{cells:?}"
    );
    // The lower median of 0..=9 repeated is 4, within 1%.
    let Value::Float(median) = cells[1] else {
        panic!("{cells:?}")
    };
    assert!((median - 4.0).abs() <= 0.04, "{median}");
    assert_eq!(
        cells[2..],
        [Value::Float(0.0), Value::Float(9.0), Value::Int(10)]
    );
}

#[test]
fn timestamps_and_strings_keep_their_type() {
    let x = |ts: i64, temperature: Option<f64>| Reading {
        zone: None,
        ..Reading::new("x", ts, temperature)
    };
    let batches = vec![
        vec![x(5_000, Some(1.0)), x(9_000, None)],
        vec![x(1_000, Some(2.0))],
    ];
    let cells = one_window(
        "t0 = \"first(ts)\", t1 = \"last(ts)\", d = \"last(device_id)\", \
         nt = \"distinct_count(ts)\"",
        batches,
    );
    assert_eq!(
        cells,
        [
            Value::Int(1_000),
            Value::Int(9_000),
            Value::Str("x".into()),
            Value::Int(3)
        ]
    );
}

#[test]
fn session_windows_reuse_reset_slots() {
    // Two sessions of device "a" (gap 10 s): a counter 1, 2, 3, then 10, 5 (a reset), then a
    // third with one row. Later sessions reuse slots that were finished and reset.
    let schema = sensor_schema();
    let window = plan(
        "window",
        "kind = \"session\"\ngap = \"10s\"\ngroup_by = [\"device_id\"]\n\
         aggregates = { inc = \"increase(level)\", f = \"first(level)\", \
         m = \"median(level)\", d = \"distinct_count(level)\", s = \"stddev(level)\" }",
        &schema,
    );
    let batches = vec![
        batch(&[level(1_000, 2), level(0, 1), level(2_000, 3)]),
        batch(&[level(100_000, 10), level(101_000, 5)]),
        batch(&[level(200_000, 7)]),
    ];
    for workers in [1, 2] {
        let (out, _) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(0),
            vec![window.clone()],
            workers,
        )
        .unwrap();
        let mut cells: Vec<Vec<Value>> = rows(&out).into_iter().map(|r| r[3..].to_vec()).collect();
        assert_eq!(cells.len(), 3, "{cells:?}");
        // The medians (lower middle values 2, 5 and 7) are estimates within 1%.
        for (row, exact) in cells.iter_mut().zip([2.0, 5.0, 7.0]) {
            let Value::Float(median) = row.remove(2) else {
                panic!("{row:?}")
            };
            assert!(
                (median - exact).abs() <= 0.01 * exact,
                "{median} vs {exact}"
            );
        }
        let (f, i) = (Value::Float, Value::Int);
        assert_eq!(
            cells,
            [
                vec![f(2.0), i(1), i(3), f(1.0)],
                vec![f(5.0), i(10), i(2), f(12.5f64.sqrt())],
                vec![Value::Null, i(7), i(1), Value::Null],
            ],
            "{workers} workers"
        );
    }
}

#[test]
fn bad_aggregates_are_plan_errors() {
    let schema = sensor_schema();
    let kind = edgeflow_operators::operators()
        .iter()
        .find(|k| k.name == "window")
        .unwrap();
    for (aggregate, message) in [
        (
            "quantile(temperature, 2)",
            "the level of 'quantile(temperature, 2)' must be between 0 and 1, got 2",
        ),
        (
            "quantile(temperature)",
            "'quantile(temperature)' needs a level",
        ),
        (
            "integral(temperature, 'spline')",
            "unknown interpolation 'spline' in 'integral(temperature, 'spline')'",
        ),
        (
            "stddev(device_id)",
            "cannot take stddev of string field 'device_id'",
        ),
        (
            "min_at(device_id)",
            "cannot take min_at of string field 'device_id'",
        ),
        ("mean(ts)", "cannot take mean of timestamp_ms field 'ts'"),
        (
            "rate(level, 2)",
            "rate takes one argument, but 'rate(level, 2)' has more",
        ),
    ] {
        let text =
            format!("kind = \"tumbling\"\nsize = \"1m\"\naggregates = {{ x = {aggregate:?} }}");
        let config = (kind.parse)(text.parse().unwrap()).unwrap();
        let errors = match config.plan(std::slice::from_ref(&schema)) {
            Ok(_) => panic!("{aggregate} planned"),
            Err(errors) => errors,
        };
        assert_eq!(errors.len(), 1, "{aggregate}: {errors:?}");
        assert_eq!(errors[0].message, message, "{aggregate}");
        assert!(errors[0].hint.is_some(), "{aggregate} has a hint");
    }
}

/// Measures rows per second through source → window (10 s tumbling, 1,000 devices) → sink on
/// one worker, with `count()` alone and then with one family of aggregates added.
///
/// `cargo test --release -p edgeflow-operators --test integration -- --ignored --nocapture aggregate_throughput`
#[test]
#[ignore = "measures throughput; run in release mode"]
fn aggregate_throughput() {
    const BATCH: usize = 8_192;
    const BATCHES: usize = 500;
    let schema = sensor_schema();
    let devices: Vec<String> = (0..1_000).map(|d| format!("device-{d:04}")).collect();
    let batches: Vec<RecordBatch> = (0..BATCHES)
        .map(|b| {
            let readings: Vec<Reading> = (0..BATCH)
                .map(|r| {
                    let i = b * BATCH + r;
                    let mut reading = Reading::new(
                        &devices[i * 7 % devices.len()],
                        (i / 10) as i64,
                        Some((i % 97) as f64),
                    );
                    reading.level = Some((i / 1_000) as i64);
                    reading
                })
                .collect();
            batch(&readings)
        })
        .collect();
    for (label, aggregates) in [
        ("count", "n = \"count()\""),
        (
            "mean, max",
            "a = \"mean(temperature)\", b = \"max(temperature)\"",
        ),
        (
            "first, last, max_at",
            "a = \"first(temperature)\", b = \"last(temperature)\", c = \"max_at(temperature)\"",
        ),
        ("stddev", "a = \"stddev(temperature)\""),
        (
            "median, quantile",
            "a = \"median(temperature)\", b = \"quantile(temperature, 0.99)\"",
        ),
        ("distinct_count", "a = \"distinct_count(temperature)\""),
        (
            "increase, rate",
            "a = \"increase(level)\", b = \"rate(level)\"",
        ),
        (
            "time_weighted_mean",
            "a = \"time_weighted_mean(temperature)\"",
        ),
    ] {
        let window = plan(
            "window",
            &format!(
                "kind = \"tumbling\"\nsize = \"10s\"\ngroup_by = [\"device_id\"]\n\
                 aggregates = {{ {aggregates} }}"
            ),
            &schema,
        );
        let started = std::time::Instant::now();
        let (out, _) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(1_000),
            vec![window],
            1,
        )
        .unwrap();
        let elapsed = started.elapsed();
        println!(
            "{label}: {:.1} M rows/s ({} output rows, {elapsed:?})",
            (BATCH * BATCHES) as f64 / elapsed.as_secs_f64() / 1e6,
            out.iter().map(RecordBatch::num_rows).sum::<usize>(),
        );
    }
}
