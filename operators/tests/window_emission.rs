//! When the `window` operator emits: `emit_empty` rows for silent keys, early firings,
//! revisions from allowed lateness, windows closed early by `max_keys`, processing time and
//! calendar alignment, each run inside the engine on 1 and 2 workers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::arrow::array::RecordBatch;
use std::sync::Arc;

use edgeflow_engine::testing::{run_collect, run_collect_with};
use edgeflow_engine::{MemoryBudget, RunOptions};

use crate::util::{Reading, Value, batch, plan, rows, sensor_schema};

fn policy(ooo_ms: u64) -> WatermarkPolicy {
    WatermarkPolicy {
        max_out_of_orderness: Duration::from_millis(ooo_ms),
        idle_timeout: None,
    }
}

fn run(
    options: &str,
    batches: &[Vec<Reading>],
    ooo: u64,
    workers: usize,
) -> (Vec<Vec<Value>>, edgeflow_engine::RunReport) {
    let schema = sensor_schema();
    let window = plan("window", options, &schema);
    let batches: Vec<RecordBatch> = batches.iter().map(|b| batch(b)).collect();
    let (out, report) = run_collect(schema, batches, policy(ooo), vec![window], workers).unwrap();
    let mut got = rows(&out);
    got.sort();
    (got, report)
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("not an int: {other:?}"),
    }
}

fn string(text: &str) -> Value {
    Value::Str(text.into())
}

#[test]
fn emit_empty_gives_silent_keys_a_zero_count_row() {
    let options = "size = \"10ms\"\ngroup_by = [\"device_id\"]\nemit_empty = true\n\
                   aggregates = { n = \"count()\", avg = \"mean(temperature)\" }";
    let batches = [
        vec![Reading::new("a", 5, Some(1.0))],
        vec![Reading::new("b", 15, Some(2.0))],
        vec![Reading::new("a", 45, Some(3.0))],
    ];
    for workers in [1, 2] {
        let (got, report) = run(options, &batches, 0, workers);
        let (i, f) = (Value::Int, Value::Float);
        let expected_through_40 = [
            vec![i(0), i(10), string("a"), i(1), f(1.0)],
            vec![i(10), i(20), string("a"), i(0), Value::Null],
            vec![i(10), i(20), string("b"), i(1), f(2.0)],
            vec![i(20), i(30), string("a"), i(0), Value::Null],
            vec![i(20), i(30), string("b"), i(0), Value::Null],
            vec![i(30), i(40), string("a"), i(0), Value::Null],
            vec![i(30), i(40), string("b"), i(0), Value::Null],
            vec![i(40), i(50), string("a"), i(1), f(3.0)],
            vec![i(40), i(50), string("b"), i(0), Value::Null],
        ];
        if workers == 1 {
            assert_eq!(got[..expected_through_40.len()], expected_through_40);
        } else {
            // Keys live on different workers, and at the end of the input a worker fills
            // the silent windows only up to its own last window: b's worker, with no row
            // after 15, may stop there. Key a's rows are all there.
            let a: Vec<&Vec<Value>> = expected_through_40
                .iter()
                .filter(|r| r[2] == string("a"))
                .collect();
            let got_a: Vec<&Vec<Value>> = got
                .iter()
                .filter(|r| r[2] == string("a") && int(&r[0]) < 50)
                .collect();
            assert_eq!(got_a, a);
            for row in got.iter().filter(|r| int(&r[0]) < 50) {
                assert!(expected_through_40.contains(row), "{row:?}");
            }
        }
        // Whether windows after the last row are emitted depends on when the end of input
        // is seen; any that are hold only zero counts.
        for row in got.iter().filter(|r| int(&r[0]) >= 50) {
            assert_eq!(int(&row[3]), 0, "{row:?}");
        }
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.state_rows, 0);
    }
}

/// One emission of a window and key: `(revision, n, provisional)`.
type Emitted = (i64, i64, bool);

#[test]
fn early_firings_are_provisional_and_the_final_row_has_the_last_revision() {
    let options = "size = \"100ms\"\nemit_every = \"20ms\"\ngroup_by = [\"device_id\"]\n\
                   aggregates = { n = \"count()\" }";
    let batches = [
        vec![Reading::new("a", 5, None)],
        vec![Reading::new("a", 30, None)],
        vec![Reading::new("b", 50, None)],
        vec![Reading::new("a", 70, None)],
        vec![Reading::new("a", 130, None)],
    ];
    for workers in [1, 2] {
        let (got, _) = run(options, &batches, 0, workers);
        // window_start, window_end, device_id, n, revision, provisional
        let mut by_key: BTreeMap<(i64, String), Vec<Emitted>> = BTreeMap::new();
        for row in &got {
            let Value::Str(key) = &row[2] else { panic!() };
            let Value::Bool(provisional) = row[5] else {
                panic!()
            };
            by_key
                .entry((int(&row[0]), key.clone()))
                .or_default()
                .push((int(&row[4]), int(&row[3]), provisional));
        }
        let first_window_a = &by_key[&(0, "a".to_string())];
        assert!(first_window_a.len() >= 2, "{first_window_a:?}");
        let mut revisions: Vec<i64> = first_window_a.iter().map(|r| r.0).collect();
        revisions.dedup();
        assert_eq!(revisions.len(), first_window_a.len(), "distinct revisions");
        let (last, rest) = first_window_a.split_last().unwrap();
        assert_eq!(*last, (last.0, 3, false), "final: 3 rows, not provisional");
        assert!(rest.iter().all(|r| r.2 && r.1 <= 3), "{rest:?}");
        let b = by_key[&(0, "b".to_string())].last().copied().unwrap();
        assert_eq!((b.1, b.2), (1, false));
    }
}

#[test]
fn allowed_lateness_revises_windows_and_later_rows_are_late() {
    let options = "size = \"10ms\"\nallowed_lateness = \"20ms\"\ngroup_by = [\"device_id\"]\n\
                   aggregates = { n = \"count()\", hi = \"max(temperature)\" }";
    let batches = [
        vec![Reading::new("a", 5, Some(1.0))],
        vec![Reading::new("a", 25, Some(2.0))],
        // Watermark 25: [0, 10) ended, but is kept until 30.
        vec![Reading::new("a", 7, Some(9.0))],
        vec![Reading::new("a", 60, Some(3.0))],
        // Watermark 60: [0, 10) is gone, this row is late.
        vec![Reading::new("a", 8, Some(7.0))],
    ];
    for workers in [1, 2] {
        let (got, report) = run(options, &batches, 0, workers);
        let first: Vec<&Vec<Value>> = got.iter().filter(|r| int(&r[0]) == 0).collect();
        // window_start, window_end, device_id, n, hi, revision, provisional
        let last = first.iter().max_by_key(|r| int(&r[5])).unwrap();
        assert_eq!(last[2..5], [string("a"), Value::Int(2), Value::Float(9.0)]);
        assert_eq!(last[6], Value::Bool(false));
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.dropped.get("late"), Some(&1));
        assert_eq!(node.state_rows, 0);
    }
}

#[test]
fn max_keys_closes_the_oldest_window_early_and_counts_it() {
    let options = "size = \"10ms\"\nmax_keys = 2\ngroup_by = [\"device_id\"]\n\
                   aggregates = { n = \"count()\" }";
    let batches = [
        vec![Reading::new("a", 1, None), Reading::new("b", 2, None)],
        vec![Reading::new("c", 3, None)],
        vec![Reading::new("a", 4, None), Reading::new("a", 12, None)],
    ];
    let (got, report) = run(options, &batches, 100, 1);
    let (i, s) = (Value::Int, string);
    assert_eq!(
        got,
        [
            vec![i(0), i(10), s("a"), i(1)],
            vec![i(0), i(10), s("b"), i(1)],
            vec![i(0), i(10), s("c"), i(1)],
            vec![i(10), i(20), s("a"), i(1)],
        ]
    );
    let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
    assert_eq!(node.values.get("evicted_windows"), Some(&1));
    // The row for the window closed early is late, not lost.
    assert_eq!(node.dropped.get("late"), Some(&1));
}

#[test]
fn memory_limit_sheds_windows_and_every_row_is_accounted_for() {
    let options = "size = \"10ms\"\ngroup_by = [\"device_id\"]\naggregates = { n = \"count()\" }";
    let schema = sensor_schema();
    let window = plan("window", options, &schema);
    // 40 devices a window, 2 rows each, over 5 windows; the budget holds about 12 groups.
    let batches: Vec<RecordBatch> = (0..10)
        .map(|b| {
            let readings: Vec<Reading> = (0..40)
                .map(|d| Reading::new(&format!("device-{d}"), b * 5 + d % 5, None))
                .collect();
            batch(&readings)
        })
        .collect();
    for workers in [1, 2] {
        let memory = Arc::new(MemoryBudget::new(Some(1_000)));
        let run_options = RunOptions {
            workers,
            io_threads: 1,
            memory: memory.clone(),
            ..RunOptions::default()
        };
        let (out, report) = run_collect_with(
            schema.clone(),
            batches.clone(),
            policy(100),
            vec![window.clone()],
            run_options,
        )
        .unwrap();
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert!(node.values.get("evicted_windows").copied().unwrap_or(0) > 0);
        let counted: i64 = rows(&out).iter().map(|r| int(&r[3])).sum();
        let late = node.dropped.get("late").copied().unwrap_or(0);
        assert_eq!(counted as u64 + late, 400);
        assert_eq!(
            (node.state_rows, node.state_bytes, memory.used()),
            (0, 0, 0)
        );
    }
}

#[test]
fn processing_time_windows_follow_the_clock() {
    let options = "size = \"1h\"\ntime = \"processing\"\naggregates = { n = \"count()\" }";
    // Event times far in the past, out of order: processing time ignores them.
    let batches = [
        vec![Reading::new("a", 5_000, None), Reading::new("b", 1, None)],
        vec![Reading::new("a", 3, None)],
    ];
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for workers in [1, 2] {
        let (got, report) = run(options, &batches, 0, workers);
        let total: i64 = got.iter().map(|r| int(&r[2])).sum();
        assert_eq!(total, 3);
        // At most two windows: the run may cross the top of an hour.
        assert!(got.len() <= 2);
        for row in &got {
            assert!(int(&row[1]) > before && int(&row[0]) <= before + 3_600_000);
        }
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.dropped_total(), 0);
    }
}

#[test]
fn daily_windows_in_a_time_zone_span_local_days() {
    let options = "size = \"1d\"\ntimezone = \"Europe/Berlin\"\naggregates = { n = \"count()\" }";
    // 2024-03-30 23:30 and 2024-03-31 00:30 local time (+01:00), then 2024-03-31 23:30
    // (+02:00) and 2024-04-01 00:30 (+02:00).
    let hour = 3_600_000;
    let march_30_2230_utc = 1_711_837_800_000;
    let batches = [vec![
        Reading::new("a", march_30_2230_utc, None),
        Reading::new("a", march_30_2230_utc + hour, None),
        Reading::new("a", march_30_2230_utc + 23 * hour, None),
        Reading::new("a", march_30_2230_utc + 24 * hour, None),
    ]];
    let (got, _) = run(options, &batches, 0, 1);
    let bounds: Vec<(i64, i64, i64)> = got
        .iter()
        .map(|r| (int(&r[0]), int(&r[1]), int(&r[2])))
        .collect();
    let midnight_31 = march_30_2230_utc + hour / 2;
    assert_eq!(
        bounds,
        [
            (midnight_31 - 24 * hour, midnight_31, 1),
            // The day the clocks go forward is 23 hours long.
            (midnight_31, midnight_31 + 23 * hour, 2),
            (midnight_31 + 23 * hour, midnight_31 + 47 * hour, 1),
        ]
    );
}
