//! The `window` operator inside an engine run: late rows, metrics, cascaded windows, and a
//! proptest against a from-scratch oracle on 1 and 2 workers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::arrow::array::{AsArray, RecordBatch};
use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;
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

fn window_options(size: &str, group_by: &str, aggregates: &str) -> String {
    format!(
        "kind = \"tumbling\"\nsize = \"{size}\"\ngroup_by = {group_by}\naggregates = {{ {aggregates} }}"
    )
}

/// Every batch holds one window, its rows strictly sorted by the key columns `keys`.
fn assert_one_sorted_window_per_batch(batches: &[RecordBatch], keys: std::ops::Range<usize>) {
    for batch in batches {
        let starts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        assert!(starts.values().iter().all(|&s| s == starts.value(0)));
        let rows = rows(std::slice::from_ref(batch));
        for pair in rows.windows(2) {
            assert!(
                pair[0][keys.clone()] < pair[1][keys.clone()],
                "rows out of key order: {pair:?}"
            );
        }
    }
}

#[test]
fn late_rows_are_dropped_and_counted_and_state_empties() {
    let schema = sensor_schema();
    let window = plan(
        "window",
        &window_options(
            "10ms",
            "[\"device_id\"]",
            "n = \"count()\", hi = \"max(temperature)\"",
        ),
        &schema,
    );
    let batches = vec![
        batch(&[
            Reading::new("a", 5, Some(1.0)),
            Reading::new("b", 25, Some(2.0)),
        ]),
        // Watermark now 25 - 5 = 20: windows ending at 10 and 20 may be gone.
        batch(&[
            Reading::new("a", 9, Some(3.0)),
            Reading::new("a", 19, Some(4.0)),
            Reading::new("a", 20, Some(5.0)),
            Reading::new("c", 21, Some(6.0)),
        ]),
    ];
    for workers in [1, 2] {
        let (out, report) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(5),
            vec![window.clone()],
            workers,
        )
        .unwrap();
        let mut got = rows(&out);
        got.sort();
        let (i, f, s) = (Value::Int, Value::Float, |t: &str| Value::Str(t.into()));
        assert_eq!(
            got,
            [
                vec![i(0), i(10), s("a"), i(1), f(1.0)],
                vec![i(20), i(30), s("a"), i(1), f(5.0)],
                vec![i(20), i(30), s("b"), i(1), f(2.0)],
                vec![i(20), i(30), s("c"), i(1), f(6.0)],
            ]
        );
        assert_one_sorted_window_per_batch(&out, 2..3);
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.rows_in, 6);
        assert_eq!(node.rows_out, 4);
        assert_eq!(node.dropped.get("late"), Some(&2));
        assert_eq!(node.state_rows, 0);
    }
}

#[test]
fn cascaded_windows_stay_on_time() {
    let schema = sensor_schema();
    let fine = plan(
        "window",
        &window_options(
            "10ms",
            "[\"device_id\"]",
            "n = \"count()\", hi = \"max(temperature)\"",
        ),
        &schema,
    );
    let coarse = plan(
        "window",
        &window_options(
            "30ms",
            "[\"device_id\"]",
            "n = \"sum(n)\", hi = \"max(hi)\", parts = \"count()\"",
        ),
        &fine.output_schema(),
    );
    let direct = plan(
        "window",
        &window_options(
            "30ms",
            "[\"device_id\"]",
            "n = \"count()\", hi = \"max(temperature)\"",
        ),
        &schema,
    );
    let batches: Vec<RecordBatch> = (0..20)
        .map(|b| {
            let readings: Vec<Reading> = (0..10)
                .map(|r| {
                    let ts = b * 9 + r;
                    Reading::new(
                        ["x", "y", "z"][(ts % 3) as usize],
                        ts,
                        Some((ts * 7 % 31) as f64),
                    )
                })
                .collect();
            batch(&readings)
        })
        .collect();
    for workers in [1, 2] {
        let (cascaded, report) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(3),
            vec![fine.clone(), coarse.clone()],
            workers,
        )
        .unwrap();
        let (straight, _) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(3),
            vec![direct.clone()],
            workers,
        )
        .unwrap();
        assert_eq!(
            report
                .nodes
                .iter()
                .find(|n| n.name == "op1")
                .unwrap()
                .dropped_total(),
            0
        );
        let mut cascaded: Vec<Vec<Value>> = rows(&cascaded)
            .into_iter()
            .map(|mut row| {
                row.pop(); // parts
                if let Value::Float(n) = row[3] {
                    row[3] = Value::Int(n as i64);
                }
                row
            })
            .collect();
        let mut straight = rows(&straight);
        cascaded.sort();
        straight.sort();
        assert_eq!(cascaded, straight);
        // Late rows of the first window are the only ones lost, and there are none here.
        let total: i64 = straight
            .iter()
            .map(|r| if let Value::Int(n) = r[3] { n } else { 0 })
            .sum();
        let late = report
            .nodes
            .iter()
            .find(|n| n.name == "op0")
            .unwrap()
            .dropped
            .get("late")
            .copied()
            .unwrap_or(0);
        assert_eq!(total as u64 + late, 200);
    }
}

// ---------------------------------------------------------------------------------------------
// Oracle

const AGGREGATES: &str = "n = \"count()\", n_t = \"count(temperature)\", \
    s = \"sum(temperature)\", avg = \"mean(temperature)\", lo = \"min(temperature)\", \
    hi = \"max(temperature)\", l_lo = \"min(level)\", l_hi = \"max(level)\", \
    l_sum = \"sum(level)\", z_hi = \"max(zone)\", hot = \"count_if(temperature > 30)\", \
    f_avg = \"mean(temperature * 1.8 + 32)\", l2_hi = \"max(level * 2)\", \
    r = \"count(100 / (level % 7))\", odd = \"count_if(level % 2 = 1 or flag)\"";

/// The group keys of each grouping mode the proptest draws from.
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

#[derive(Default)]
struct Group {
    rows: i64,
    temps: Vec<f64>,
    /// Non-null temperatures, NaN included.
    all_temps: Vec<f64>,
    /// Every row's level, in row order (with `flags`).
    all_levels: Vec<Option<i64>>,
    levels: Vec<i64>,
    zones: Vec<i64>,
    flags: Vec<bool>,
}

impl Group {
    fn values(&self) -> Vec<Value> {
        let opt_f = |v: Option<f64>| v.map_or(Value::Null, Value::Float);
        let opt_i = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
        let n = self.temps.len();
        let sum: f64 = self.temps.iter().sum();
        vec![
            Value::Int(self.rows),
            Value::Int(n as i64),
            opt_f((n > 0).then_some(sum)),
            opt_f((n > 0).then(|| sum / n as f64)),
            opt_f(self.temps.iter().copied().reduce(f64::min)),
            opt_f(self.temps.iter().copied().reduce(f64::max)),
            opt_i(self.levels.iter().copied().min()),
            opt_i(self.levels.iter().copied().max()),
            opt_f((!self.levels.is_empty()).then(|| self.levels.iter().map(|&l| l as f64).sum())),
            opt_i(self.zones.iter().copied().max()),
            // Floats compare in Arrow's total order, where NaN is above every number.
            Value::Int(
                self.all_temps
                    .iter()
                    .filter(|t| t.is_nan() || **t > 30.0)
                    .count() as i64,
            ),
            opt_f(
                (n > 0).then(|| self.temps.iter().map(|t| t * 1.8 + 32.0).sum::<f64>() / n as f64),
            ),
            opt_i(self.levels.iter().map(|l| l * 2).max()),
            Value::Int(self.levels.iter().filter(|l| *l % 7 != 0).count() as i64),
            Value::Int(
                self.all_levels
                    .iter()
                    .zip(&self.flags)
                    .filter(|(l, f)| l.is_some_and(|l| l % 2 == 1) || **f)
                    .count() as i64,
            ),
        ]
    }
}

/// Tumbling or hopping windows: `size`, a new window every `slide`, rows accepted up to
/// `lateness` after their window ended.
#[derive(Clone, Copy, Debug)]
struct Windows {
    size: i64,
    slide: i64,
    lateness: i64,
}

impl Windows {
    /// The starts of the windows holding `ts`.
    fn starts(self, ts: i64) -> impl Iterator<Item = i64> {
        let latest = ts - ts.rem_euclid(self.slide);
        (0..self.size / self.slide)
            .map(move |k| latest - k * self.slide)
            .filter(move |start| start + self.size > ts)
    }
}

/// Output rows (sorted), the number of late rows and the number of expression errors (on-time
/// rows whose `level % 7` is 0, a division by zero in `r`), computed from scratch: batch `i`
/// carries watermark `max(0, max event time of batches 0..i - ooo)`; a row is late when all
/// its windows ended `lateness` or more before that watermark. With lateness, these are the
/// rows a reader sees after keeping the highest revision of each window and key.
fn oracle(
    batches: &[Vec<Reading>],
    windows: Windows,
    ooo: i64,
    keys: &[&str],
) -> (Vec<Vec<Value>>, u64, u64) {
    let mut groups: BTreeMap<(i64, Vec<Value>), Group> = BTreeMap::new();
    let (mut watermark, mut max_seen, mut late, mut errors) = (0i64, i64::MIN, 0u64, 0u64);
    for readings in batches {
        for reading in readings {
            let first_end = windows.starts(reading.ts).min().unwrap() + windows.size;
            if first_end + windows.lateness <= watermark {
                late += 1;
                continue;
            }
            for start in windows.starts(reading.ts) {
                let group = groups.entry((start, key_of(reading, keys))).or_default();
                group.rows += 1;
                group
                    .temps
                    .extend(reading.temperature.filter(|t| !t.is_nan()));
                group.levels.extend(reading.level);
                group.zones.extend(reading.zone.map(i64::from));
                group.all_temps.extend(reading.temperature);
                group.all_levels.push(reading.level);
                group.flags.push(reading.flag);
            }
            errors += u64::from(reading.level.is_some_and(|l| l % 7 == 0));
        }
        max_seen = max_seen.max(readings.iter().map(|r| r.ts).max().unwrap());
        watermark = watermark.max(max_seen - ooo);
    }
    let rows = groups
        .into_iter()
        .map(|((start, key), group)| {
            let mut row = vec![Value::Int(start), Value::Int(start + windows.size)];
            row.extend(key);
            row.extend(group.values());
            row
        })
        .collect();
    (rows, late, errors)
}

/// What a reader keeps of output with `revision` and `provisional` columns (the last two):
/// the highest revision of each window and key, without those two columns. Checks that the
/// revisions of a window and key are distinct and that the kept one is not provisional.
fn last_revisions(rows: Vec<Vec<Value>>, keys: usize) -> Result<Vec<Vec<Value>>, TestCaseError> {
    let mut kept: BTreeMap<Vec<Value>, (i64, Vec<Value>)> = BTreeMap::new();
    for mut row in rows {
        let provisional = row.pop().unwrap();
        let Value::Int(revision) = row.pop().unwrap() else {
            return Err(TestCaseError::fail("revision is not an int"));
        };
        let id = row[..2 + keys].to_vec();
        row.push(provisional);
        match kept.get(&id) {
            Some((seen, _)) if *seen == revision => {
                return Err(TestCaseError::fail(format!(
                    "revision {revision} twice: {id:?}"
                )));
            }
            Some((seen, _)) if *seen > revision => {}
            _ => {
                kept.insert(id, (revision, row));
            }
        }
    }
    kept.into_values()
        .map(|(_, mut row)| {
            prop_assert_eq!(
                row.pop(),
                Some(Value::Bool(false)),
                "the last revision is final"
            );
            Ok(row)
        })
        .collect()
}

fn same_rows(got: &[Vec<Value>], expected: &[Vec<Value>]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), expected.len(), "row counts differ");
    for (g, e) in got.iter().zip(expected) {
        prop_assert!(
            g.len() == e.len() && g.iter().zip(e).all(|(a, b)| a.close_to(b)),
            "rows differ:\n  got      {:?}\n  expected {:?}",
            g,
            e
        );
    }
    Ok(())
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort();
    rows
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
        prop::option::weighted(0.9, 0u8..5),
        prop::option::weighted(0.9, -2i32..3),
        any::<bool>(),
        0i64..40,
        prop_oneof![8 => 0i64..15, 1 => 0i64..200],
        prop_oneof![
            6 => (-50.0f64..150.0).prop_map(Some),
            1 => Just(None),
            1 => Just(Some(f64::NAN)),
        ],
        prop::option::weighted(0.8, -1_000i64..1_000),
        prop::bool::weighted(0.1),
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        rng_seed: RngSeed::Fixed(0x5EED_ED6E_F10E),
        ..ProptestConfig::default()
    })]

    #[test]
    fn window_matches_oracle_on_one_and_two_workers(
        raw in prop::collection::vec(prop::collection::vec(raw_row(), 1..30), 1..10),
        size in prop::sample::select(vec![5i64, 10, 25, 100]),
        ooo in 0i64..40,
        grouping in 0usize..GROUPINGS.len(),
    ) {
        let windows = Windows { size, slide: size, lateness: 0 };
        check_against_oracle(&raw, windows, ooo, GROUPINGS[grouping], None)?;
    }

    #[test]
    fn hopping_late_and_early_windows_match_oracle(
        raw in prop::collection::vec(prop::collection::vec(raw_row(), 1..30), 1..10),
        (size, slide) in prop::sample::select(vec![(10i64, 5i64), (30, 10), (20, 20), (100, 25)]),
        lateness in prop::sample::select(vec![0i64, 7, 30]),
        every in prop::option::of(prop::sample::select(vec![2i64, 5])),
        ooo in 0i64..40,
        grouping in 0usize..GROUPINGS.len(),
    ) {
        let windows = Windows { size, slide, lateness };
        check_against_oracle(&raw, windows, ooo, GROUPINGS[grouping], every)?;
    }
}

fn check_against_oracle(
    raw: &[Vec<RawRow>],
    windows: Windows,
    ooo: i64,
    keys: &[&str],
    every: Option<i64>,
) -> Result<(), TestCaseError> {
    let group_by = format!("{keys:?}");
    let schema = sensor_schema();
    let mut options = format!(
        "kind = \"hopping\"\nsize = \"{}ms\"\nslide = \"{}ms\"\nallowed_lateness = \"{}ms\"\n\
         group_by = {group_by}\naggregates = {{ {AGGREGATES} }}",
        windows.size, windows.slide, windows.lateness
    );
    if let Some(every) = every {
        options.push_str(&format!("\nemit_every = \"{every}ms\""));
    }
    let window = plan("window", &options, &schema);
    let revisions = windows.lateness > 0 || every.is_some();
    let readings = readings(raw);
    let batches: Vec<RecordBatch> = readings.iter().map(|r| batch(r)).collect();
    let (expected, late, errors) = oracle(&readings, windows, ooo, keys);
    let total: usize = readings.iter().map(Vec::len).sum();

    let mut results = Vec::new();
    for workers in [1, 2] {
        let (out, report) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(ooo as u64),
            vec![window.clone()],
            workers,
        )
        .unwrap();
        assert_one_sorted_window_per_batch(&out, 2..2 + keys.len());
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        prop_assert_eq!(node.rows_in, total as u64);
        prop_assert_eq!(node.dropped.get("late").copied().unwrap_or(0), late);
        // Expressions are evaluated on on-time rows only.
        prop_assert_eq!(
            node.dropped.get("expression_error").copied().unwrap_or(0),
            errors
        );
        prop_assert_eq!(node.state_rows, 0);
        let got = if revisions {
            prop_assert!(node.rows_out >= expected.len() as u64);
            last_revisions(rows(&out), keys.len())?
        } else {
            prop_assert_eq!(node.rows_out, expected.len() as u64);
            sorted(rows(&out))
        };
        same_rows(&got, &expected)?;
        results.push(got);
    }
    same_rows(&results[0], &results[1])
}

/// Measures rows per second through source → window → sink on one worker.
///
/// `cargo test --release -p edgeflow-operators --test integration -- --ignored --nocapture throughput`
#[test]
#[ignore = "measures throughput; run in release mode"]
fn throughput() {
    const BATCH: usize = 8_192;
    const BATCHES: usize = 2_000;
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
                    reading.level = Some((i % 13) as i64);
                    reading
                })
                .collect();
            batch(&readings)
        })
        .collect();
    for (label, group_by) in [
        ("device_id", "[\"device_id\"]"),
        ("device_id+flag", "[\"device_id\", \"flag\"]"),
        ("none", "[]"),
    ] {
        let window = plan(
            "window",
            &window_options(
                "10s",
                group_by,
                "temp_avg = \"mean(temperature)\", temp_max = \"max(temperature)\", n = \"count()\"",
            ),
            &schema,
        );
        let started = Instant::now();
        let (out, _) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(1_000),
            vec![window],
            1,
        )
        .unwrap();
        let elapsed = started.elapsed();
        let rows = (BATCH * BATCHES) as f64;
        println!(
            "group_by {label}: {:.1} M rows/s ({} output rows, {elapsed:?})",
            rows / elapsed.as_secs_f64() / 1e6,
            out.iter().map(RecordBatch::num_rows).sum::<usize>(),
        );
    }
}
