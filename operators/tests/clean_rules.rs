//! The rules of `clean` beyond ranges, inside an engine run on 1 and 2 workers: the `rejected`
//! side output, and a proptest that checks `dedup`, `max_rate_of_change` and `fill`
//! (`previous`, and `linear`, which holds rows until the next reading) on random out-of-order
//! input (with redelivered duplicates) against a from-scratch oracle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::testing::{CollectSink, VecSource};
use edgeflow_engine::{
    DataflowOperator, Graph, NodeKind, PipelineMetrics, RunOptions, RunReport, WatermarkPolicy, run,
};
use proptest::prelude::*;

use crate::util::{Reading, Value, batch, plan, rows, sensor_schema};

/// Runs `source → clean → sink`, with a second sink on `clean.rejected`; returns the main
/// rows, the rejected rows and the report.
pub fn run_with_rejected(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    policy: WatermarkPolicy,
    operator: Arc<dyn DataflowOperator>,
    workers: usize,
) -> (Vec<RecordBatch>, Vec<RecordBatch>, RunReport) {
    let side = operator.side_outputs();
    let mut graph = Graph::new("test");
    let source = graph
        .add(
            "source",
            vec![],
            NodeKind::Source {
                schema,
                watermark: policy,
                source: Box::new(VecSource::new(batches)),
            },
        )
        .unwrap();
    let op = graph
        .add("clean", vec![source], NodeKind::Operator(operator))
        .unwrap();
    let rejected = graph
        .add(
            "clean.rejected",
            vec![op],
            NodeKind::SideOutput {
                index: 0,
                schema: side[0].1.clone(),
            },
        )
        .unwrap();
    let (main_sink, rejected_sink) = (CollectSink::new(), CollectSink::new());
    for (name, input, sink) in [
        ("out", op, &main_sink),
        ("rejects", rejected, &rejected_sink),
    ] {
        graph
            .add(
                name,
                vec![input],
                NodeKind::Sink {
                    sink: Box::new(sink.clone()),
                },
            )
            .unwrap();
    }
    let options = RunOptions {
        workers,
        io_threads: 1,
        ..RunOptions::default()
    };
    let report = run(graph, options, PipelineMetrics::new()).unwrap();
    (main_sink.batches(), rejected_sink.batches(), report)
}

fn policy(out_of_orderness_ms: u64) -> WatermarkPolicy {
    WatermarkPolicy {
        max_out_of_orderness: Duration::from_millis(out_of_orderness_ms),
        idle_timeout: None,
    }
}

fn reading(device: &str, ts: i64, temperature: Option<f64>, level: Option<i64>) -> Reading {
    Reading {
        level,
        ..Reading::new(device, ts, temperature)
    }
}

fn str_of(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[test]
fn rejected_rows_leave_unchanged_with_their_reason_on_one_and_two_workers() {
    let options = "key = [\"device_id\"]\n\
                   convert = { temperature = { from = \"degF\", to = \"degC\" } }\n\
                   drop_null = [\"device_id\"]\n\
                   drop_outside = { temperature = [-40, 60] }\n\
                   dedup = { on = [\"device_id\", \"ts\"], horizon = \"1m\" }\n\
                   max_rate_of_change = { temperature = 1.0 }";
    for workers in [1, 2] {
        let schema = sensor_schema();
        let clean = plan("clean", options, &schema);
        let mut nameless = reading("x", 500, Some(50.0), None);
        nameless.device = None;
        let batches = vec![
            batch(&[
                reading("a", 1_000, Some(68.0), None), // 20 °C
                reading("b", 1_000, Some(50.0), None), // 10 °C
                nameless,
                reading("a", 1_000, Some(68.0), None), // duplicate
            ]),
            batch(&[
                reading("a", 2_000, Some(212.0), None), // 100 °C: out of range
                reading("a", 3_000, Some(86.0), None),  // 30 °C in 2 s: too fast
                reading("b", 3_000, Some(51.8), None),  // 11 °C in 2 s: fine
            ]),
        ];
        let (out, rejected, report) = run_with_rejected(schema, batches, policy(0), clean, workers);
        let mut kept: Vec<(String, Value, Value)> = rows(&out)
            .into_iter()
            .map(|r| (str_of(&r[0]), r[3].clone(), r[4].clone()))
            .collect();
        kept.sort();
        assert_eq!(kept.len(), 3, "workers = {workers}");
        assert_eq!(kept[0].0, "a");
        assert!(kept[0].2.close_to(&Value::Float(20.0)));
        assert!(kept[2].2.close_to(&Value::Float(11.0)));
        let mut reasons: Vec<(Value, Value, String)> = rows(&rejected)
            .into_iter()
            .map(|r| (r[3].clone(), r[4].clone(), str_of(&r[6])))
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                (
                    Value::Int(500),
                    Value::Float(50.0),
                    "null_field:device_id".into()
                ),
                (Value::Int(1_000), Value::Float(68.0), "duplicate".into()),
                (
                    Value::Int(2_000),
                    Value::Float(212.0),
                    "out_of_range:temperature".into()
                ),
                (
                    Value::Int(3_000),
                    Value::Float(86.0),
                    "rate_of_change:temperature".into()
                ),
            ],
            "workers = {workers}"
        );
        let node = report.nodes.iter().find(|n| n.name == "clean").unwrap();
        assert_eq!((node.rows_in, node.rows_out), (7, 3));
        assert_eq!(node.dropped_total(), 4);
        for reason in ["null_field", "duplicate", "out_of_range", "rate_of_change"] {
            assert_eq!(node.dropped.get(reason), Some(&1), "{reason}");
        }
        assert_eq!(node.state_rows, 0, "state is released at the end of input");
    }
}

#[test]
fn keys_beyond_max_keys_are_forgotten_and_counted() {
    let schema = sensor_schema();
    let clean = plan(
        "clean",
        "key = [\"device_id\"]\nmax_keys = 10\nfill = { level = {} }",
        &schema,
    );
    let readings: Vec<Reading> = (0..100)
        .map(|i| reading(&format!("d{i}"), i, Some(1.0), Some(i)))
        .collect();
    let (out, _, report) = run_with_rejected(schema, vec![batch(&readings)], policy(0), clean, 1);
    assert_eq!(rows(&out).len(), 100);
    let node = report.nodes.iter().find(|n| n.name == "clean").unwrap();
    assert!(node.values.get("evicted_keys").copied().unwrap_or(0) >= 90);
}

const HORIZON: i64 = 5_000;
const RATE: f64 = 5.0;
const GAP: i64 = 3_000;
const TTL: i64 = 20_000;
const OUT_OF_ORDERNESS: i64 = 2_000;
/// `max_gap` and `max_held` of the linear fill of the temperature.
const LINEAR_GAP: i64 = 4_000;
const MAX_HELD: usize = 2;

fn oracle_options() -> String {
    format!(
        "key = [\"device_id\"]\n\
         dedup = {{ on = [\"device_id\", \"ts\", \"temperature\"], horizon = \"{HORIZON}ms\" }}\n\
         max_rate_of_change = {{ temperature = {RATE:.1} }}\n\
         fill = {{ level = {{ method = \"previous\", max_gap = \"{GAP}ms\" }}, \
                   temperature = {{ method = \"linear\", max_gap = \"{LINEAR_GAP}ms\", \
                                    max_held = {MAX_HELD} }} }}\n\
         state_ttl = \"{TTL}ms\""
    )
}

#[derive(Default)]
struct KeyState {
    latest: i64,
    rate: Option<(i64, f64)>,
    fill: Option<(i64, i64)>,
    /// Linear fill of the temperature: the two latest readings by event time, and the rows
    /// waiting for the next one (index into the output, event time), in arrival order.
    readings: Vec<(i64, f64)>,
    waiting: Vec<(usize, i64)>,
}

/// A held row leaves: filled with `value` and marked, or (`None`) unfilled as it is.
fn leave(out: &mut [Vec<Value>], index: usize, value: Option<f64>) {
    if let Some(v) = value {
        out[index][2] = Value::Float(v);
        out[index][5] = Value::Bool(true);
    }
}

/// The straight line through `(t0, v0)` and `(t1, v1)` at `t`.
fn line((t0, v0): (i64, f64), (t1, v1): (i64, f64), t: i64) -> f64 {
    if t1 == t0 {
        v1
    } else {
        v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64
    }
}

/// Output rows as (device, ts, temperature, level, level_filled, temperature_filled) and
/// rejected rows as (device, ts, reason), from the documented semantics, row by row.
#[allow(clippy::type_complexity)]
fn oracle(batches: &[Vec<Reading>]) -> (Vec<Vec<Value>>, Vec<(String, i64, String)>) {
    let mut seen: HashMap<(String, i64, u64), i64> = HashMap::new();
    let mut keys: HashMap<String, KeyState> = HashMap::new();
    let (mut out, mut rejected): (Vec<Vec<Value>>, _) = (Vec::new(), Vec::new());
    let mut max_ts: Option<i64> = None;
    for rows in batches {
        // The watermark the batch is stamped with: what the batches before it left.
        let watermark = max_ts.map_or(0, |m| (m - OUT_OF_ORDERNESS).max(0));
        // Rows still waiting LINEAR_GAP after their time leave unfilled (they already are).
        for state in keys.values_mut() {
            state
                .waiting
                .retain(|&(_, ts)| ts + LINEAR_GAP >= watermark);
        }
        for r in rows {
            let device = r.device.clone().unwrap();
            let combo = (
                device.clone(),
                r.ts,
                r.temperature.map_or(u64::MAX, f64::to_bits),
            );
            match seen.get(&combo).copied() {
                Some(t) if t + HORIZON >= watermark => {
                    rejected.push((device, r.ts, "duplicate".to_string()));
                    seen.insert(combo, t.max(r.ts));
                    continue;
                }
                _ if r.ts + HORIZON < watermark => {}
                _ => {
                    seen.insert(combo, r.ts);
                }
            }
            let fresh = KeyState {
                latest: r.ts,
                ..KeyState::default()
            };
            let index = out.len();
            let state = keys.entry(device.clone()).or_insert(KeyState {
                latest: r.ts,
                ..KeyState::default()
            });
            if state.latest + TTL < watermark {
                *state = fresh;
            }
            if let (Some(v), Some((then, previous))) = (r.temperature, state.rate) {
                let dt = (r.ts - then).abs() as f64 / 1_000.0;
                let change = (v - previous).abs();
                if (dt == 0.0 && change > 0.0) || (dt > 0.0 && change / dt > RATE) {
                    rejected.push((device, r.ts, "rate_of_change:temperature".to_string()));
                    continue;
                }
            }
            if let Some(v) = r.temperature
                && state.rate.is_none_or(|(then, _)| r.ts >= then)
            {
                state.rate = Some((r.ts, v));
            }
            let (level, filled) = match r.level {
                Some(level) => {
                    if state.fill.is_none_or(|(then, _)| r.ts >= then) {
                        state.fill = Some((r.ts, level));
                    }
                    (Some(level), false)
                }
                None => match state.fill {
                    Some((then, v)) if (r.ts - then).abs() <= GAP => (Some(v), true),
                    _ => (None, false),
                },
            };
            state.latest = state.latest.max(r.ts);
            out.push(vec![
                Value::Str(device),
                Value::Int(r.ts),
                r.temperature.map_or(Value::Null, Value::Float),
                level.map_or(Value::Null, Value::Int),
                Value::Bool(filled),
                Value::Bool(false),
            ]);
            // Linear fill of the temperature.
            let near = |then: i64| (r.ts - then).abs() <= LINEAR_GAP;
            match r.temperature {
                Some(v) => {
                    let before = state.readings.last().copied();
                    let mut still = Vec::new();
                    for (i, ts) in std::mem::take(&mut state.waiting) {
                        if r.ts >= ts {
                            let value = before
                                .filter(|_| r.ts - ts <= LINEAR_GAP)
                                .map(|b| line(b, (r.ts, v), ts));
                            leave(&mut out, i, value);
                        } else {
                            still.push((i, ts));
                        }
                    }
                    state.waiting = still;
                    let full = state.readings.len() == 2;
                    if !(full && r.ts < state.readings[0].0) {
                        state.readings.push((r.ts, v));
                        state.readings.sort_by_key(|&(t, _)| t);
                        if state.readings.len() > 2 {
                            state.readings.remove(0);
                        }
                    }
                }
                None => {
                    let same = state.readings.iter().rev().find(|(t, _)| *t == r.ts);
                    let latest = state.readings.last().copied();
                    if let Some(&(_, v)) = same {
                        leave(&mut out, index, Some(v));
                    } else if let Some((t, _)) = latest.filter(|&(t, _)| t < r.ts) {
                        if near(t) {
                            if state.waiting.len() == MAX_HELD {
                                state.waiting.remove(0);
                            }
                            state.waiting.push((index, r.ts));
                        }
                    } else if let [a, b] = state.readings[..]
                        && a.0 < r.ts
                        && r.ts < b.0
                        && near(a.0)
                        && near(b.0)
                    {
                        leave(&mut out, index, Some(line(a, b, r.ts)));
                    }
                }
            }
        }
        max_ts = rows.iter().map(|r| r.ts).chain(max_ts).max();
    }
    (out, rejected)
}

fn scenario() -> impl Strategy<Value = Vec<Vec<Reading>>> {
    // (device, time step, backward jitter, temperature change, spike, null temperature,
    //  null level, redeliver one of the last rows, the device's sensor fails or recovers)
    let step = (
        0usize..3,
        0i64..1_500,
        prop_oneof![4 => Just(0i64), 1 => 0i64..3_000],
        -3.0f64..3.0,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.15, 0usize..8),
        prop::bool::weighted(0.1),
    );
    (
        prop::collection::vec(step, 1..120),
        prop::collection::vec(1usize..12, 1..40),
    )
        .prop_map(|(steps, sizes)| {
            let mut clock = 10_000i64;
            let mut temps = [20.0f64; 3];
            // Runs of missing temperatures, so that linear fills hold several rows.
            let mut failed = [false; 3];
            let mut readings: Vec<Reading> = Vec::new();
            for (device, dt, back, change, spike, no_temp, no_level, again, toggle) in steps {
                failed[device] ^= toggle;
                let no_temp = no_temp || failed[device];
                if let Some(back_n) = again
                    && !readings.is_empty()
                {
                    let i = readings.len().saturating_sub(1 + back_n % readings.len());
                    readings.push(readings[i].clone());
                    continue;
                }
                clock += dt;
                temps[device] = (temps[device] + change).round();
                let temperature = if no_temp {
                    None
                } else if spike {
                    Some(temps[device] + 40.0)
                } else {
                    Some(temps[device])
                };
                let level = (!no_level).then_some(clock / 100);
                readings.push(reading(
                    ["a", "b", "c"][device],
                    (clock - back).max(0),
                    temperature,
                    level,
                ));
            }
            let mut batches = Vec::new();
            let mut rest = readings.as_slice();
            let mut sizes = sizes.into_iter().cycle();
            while !rest.is_empty() {
                let n = sizes.next().unwrap_or(1).min(rest.len());
                batches.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            batches
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// dedup, max_rate_of_change and fill (previous and linear) on 1 and 2 workers give
    /// exactly what the oracle computes from the documented semantics, with state expiring
    /// and held rows leaving by the watermark.
    #[test]
    fn keyed_rules_match_the_oracle_on_one_and_two_workers(batches in scenario()) {
        let (mut want, mut want_rejected) = oracle(&batches);
        want.sort();
        want_rejected.sort();
        let inputs: Vec<RecordBatch> = batches.iter().map(|b| batch(b)).collect();
        for workers in [1, 2] {
            let schema = sensor_schema();
            let clean = plan("clean", &oracle_options(), &schema);
            let (out, rejected, report) = run_with_rejected(
                schema,
                inputs.clone(),
                policy(OUT_OF_ORDERNESS as u64),
                clean,
                workers,
            );
            let mut got: Vec<Vec<Value>> = rows(&out)
                .into_iter()
                .map(|r| {
                    vec![
                        r[0].clone(),
                        r[3].clone(),
                        r[4].clone(),
                        r[5].clone(),
                        r[6].clone(),
                        r[7].clone(),
                    ]
                })
                .collect();
            got.sort();
            prop_assert_eq!(&got, &want, "workers = {}", workers);
            let mut got_rejected: Vec<(String, i64, String)> = rows(&rejected)
                .into_iter()
                .map(|r| match &r[3] {
                    Value::Int(ts) => (str_of(&r[0]), *ts, str_of(&r[6])),
                    other => panic!("timestamp expected, got {other:?}"),
                })
                .collect();
            got_rejected.sort();
            prop_assert_eq!(&got_rejected, &want_rejected, "workers = {}", workers);
            let node = report.nodes.iter().find(|n| n.name == "clean").unwrap();
            prop_assert_eq!(node.dropped_total() as usize, want_rejected.len());
        }
    }
}

/// Throughput of a clean step with dedup, a range drop and a unit conversion (issue 5's
/// benchmark), against the same run without it:
///
/// ```sh
/// cargo test --release -p edgeflow-operators -- --ignored --nocapture clean_throughput
/// ```
#[test]
#[ignore = "throughput measurement; run in release mode"]
fn clean_throughput() {
    use edgeflow_engine::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use edgeflow_engine::arrow::datatypes::{DataType, Field};
    use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
    use edgeflow_engine::testing::run_collect;
    use std::time::Instant;

    const ROWS: usize = 10_000_000;
    const BATCH: usize = 8192;
    const DEVICES: usize = 1_000;
    let schema = schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
            Field::new("temperature", DataType::Float64, true),
        ],
        Some("ts"),
    );
    let names: Vec<String> = (0..DEVICES).map(|d| format!("dev-{d:04}")).collect();
    let batches: Vec<RecordBatch> = (0..ROWS.div_ceil(BATCH))
        .map(|b| {
            let rows = b * BATCH..(b * BATCH + BATCH).min(ROWS);
            // One reading per device per second; every 200th row is sent twice (QoS 1).
            let index = |i: usize| if i % 200 == 1 { i - 1 } else { i };
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.clone().map(|i| &names[index(i) % DEVICES]),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            rows.clone().map(|i| (index(i) / DEVICES) as i64 * 1_000),
                        )
                        .with_timezone(UTC),
                    ),
                    Arc::new(Float64Array::from_iter_values(rows.map(|i| {
                        if i % 1_000 == 7 {
                            900.0
                        } else {
                            60.0 + (i % 17) as f64
                        }
                    }))),
                ],
            )
            .unwrap()
        })
        .collect();
    let clean = plan(
        "clean",
        "key = [\"device_id\"]\n\
         convert = { temperature = { from = \"degF\", to = \"degC\" } }\n\
         drop_outside = { temperature = [-40, 125] }\n\
         dedup = { on = [\"device_id\", \"ts\"], horizon = \"10s\" }",
        &schema,
    );
    for workers in [1, 2] {
        let started = Instant::now();
        let (_, report) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(2_000),
            vec![],
            workers,
        )
        .unwrap();
        let bare = started.elapsed();
        assert_eq!(report.nodes[0].rows_out as usize, ROWS);
        let started = Instant::now();
        let (_, report) = run_collect(
            schema.clone(),
            batches.clone(),
            policy(2_000),
            vec![clean.clone()],
            workers,
        )
        .unwrap();
        let with_clean = started.elapsed();
        let node = report.nodes.iter().find(|n| n.name == "op0").unwrap();
        assert_eq!(node.dropped.get("duplicate"), Some(&(ROWS as u64 / 200)));
        let extra = with_clean.saturating_sub(bare);
        println!(
            "workers = {workers}: source → sink {bare:.2?}, with clean {with_clean:.2?}: clean costs \
             {extra:.2?} ({:.1} M rows/s), dropped {:?}",
            ROWS as f64 / extra.as_secs_f64().max(1e-9) / 1e6,
            node.dropped
        );
    }
}
