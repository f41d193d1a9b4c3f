//! Unit tests of the `anomaly` options: the documented forms parse and plan, and each bad
//! option is reported at its path.

use super::*;
use edgeflow_engine::arrow::datatypes::Field;
use edgeflow_engine::schema::{schema_with_event_time, timestamp_type};

fn schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
            Field::new("temperature", DataType::Float64, true),
            Field::new("max_temperature", DataType::Float64, true),
            Field::new("note", DataType::Utf8, true),
        ],
        Some("ts"),
    )
}

fn plan(text: &str) -> Result<Anomaly, Vec<OptionError>> {
    let config: AnomalyConfig = parse_options(text.parse().unwrap()).map_err(|e| vec![e])?;
    config.build(&[schema()])
}

fn paths(errors: &[OptionError]) -> Vec<String> {
    errors.iter().map(|e| e.path.join(".")).collect()
}

#[test]
fn every_method_plans_with_its_documented_options() {
    let cases = [
        "method = \"zscore\"\nvalue = \"temperature\"\nwindow = 50\nthreshold = 3.0",
        "method = \"zscore\"\nvalue = \"temperature\"\nwindow = \"10m\"\nmax_history = 500",
        "method = \"ewma\"\nvalue = \"temperature * 2\"\nalpha = 0.2\nthreshold = 3.0",
        "method = \"mad\"\nvalue = \"temperature\"\nwindow = 100\ndirection = \"up\"",
        "method = \"spike_dip\"\nvalue = \"temperature\"\nconfidence = 99\nhistory = 200",
        "method = \"change_point\"\nvalue = \"temperature\"\nthreshold = 5\ndrift = 0.5",
        "method = \"flatline\"\nvalue = \"temperature\"\nduration = \"15m\"\nepsilon = 0.01",
        "method = \"gap\"\nduration = \"5m\"",
        "method = \"rate_of_change\"\nvalue = \"temperature\"\nmax_rate = 0.5",
        "method = \"threshold\"\nvalue = \"temperature\"\nmin = -20\nmax = \"max_temperature\"",
        "method = \"ensemble\"\nvalue = \"temperature\"\ncombine = \"vote\"\nmin_votes = 2\n\
         members = [{ method = \"zscore\" }, { method = \"mad\" }, { method = \"ewma\" }]",
    ];
    for text in cases {
        let op = plan(&format!("group_by = [\"device_id\"]\n{text}"))
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let schema = op.output_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names[5..],
            [ANOMALY_SCORE, IS_ANOMALY, METHOD, REASON],
            "{text}"
        );
    }
    let op = plan("method = \"mad\"\nvalue = \"temperature\"").unwrap();
    assert_eq!(op.method().0.name(), "mad");
    assert_eq!(
        op.method().1,
        100,
        "the warm-up defaults to the window (100)"
    );
    let op = plan("method = \"zscore\"\nvalue = \"temperature\"\nwindow = 40").unwrap();
    assert_eq!(op.method().1, 40, "the warm-up defaults to the window");
    // Gap rows null every column but the key and the time.
    let op = plan("method = \"gap\"\nduration = \"1m\"\ngroup_by = [\"device_id\"]").unwrap();
    let schema = op.output_schema();
    assert!(!schema.field(0).is_nullable());
    assert!(!schema.field(1).is_nullable());
}

#[test]
fn bad_options_are_reported_at_their_paths() {
    let errors = plan("method = \"zscor\"\nvalue = \"temperature\"").unwrap_err();
    assert_eq!(paths(&errors), ["method"]);
    assert_eq!(errors[0].hint.as_deref(), Some("did you mean 'zscore'?"));

    let errors = plan(
        "method = \"zscore\"\nvalue = \"note\"\nalpha = 0.3\nthreshold = -1\n\
         group_by = [\"devce_id\"]",
    )
    .unwrap_err();
    assert_eq!(
        paths(&errors),
        ["group_by.0", "alpha", "threshold", "value"]
    );
    assert!(
        errors[1]
            .message
            .contains("does not apply to method 'zscore'")
    );

    let errors =
        plan("method = \"threshold\"\nvalue = \"temperature\"\nmax = \"note\"").unwrap_err();
    assert_eq!(paths(&errors), ["max"]);
    let errors = plan("method = \"threshold\"\nvalue = \"temperature\"").unwrap_err();
    assert_eq!(paths(&errors), ["max"]);
    let errors = plan("method = \"flatline\"\nvalue = \"temperature\"").unwrap_err();
    assert_eq!(paths(&errors), ["duration"]);
    let errors = plan("method = \"zscore\"").unwrap_err();
    assert_eq!(paths(&errors), ["value"]);
    let errors =
        plan("method = \"zscore\"\nvalue = \"temperature\"\nwindow = \"ten\"").unwrap_err();
    assert_eq!(paths(&errors), ["window"]);
    let errors = plan(
        "method = \"ensemble\"\nvalue = \"temperature\"\ncombine = \"vote\"\nmin_votes = 5\n\
         members = [{ method = \"zscore\", alpha = 1 }, { method = \"ensemble\" }]",
    )
    .unwrap_err();
    assert_eq!(
        paths(&errors),
        ["members.0.alpha", "members.1.method", "min_votes"]
    );
    let error =
        parse_options::<AnomalyConfig>("method = \"mad\"\nwindw = 3".parse().unwrap()).unwrap_err();
    assert_eq!(error.path, ["windw"]);
}

/// Past `max_keys`, the least recently seen key is forgotten: it starts over, warm-up
/// included, and its pending gap deadline goes with it.
#[test]
fn max_keys_forgets_the_least_recently_seen_key() {
    use edgeflow_engine::arrow::array::TimestampMillisecondArray;
    use edgeflow_engine::arrow::array::{AsArray, Float64Array, RecordBatch, StringArray};
    use edgeflow_engine::schema::UTC;

    let rows = |rows: &[(&str, i64, f64)]| {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1 * 1000))
                        .with_timezone(UTC),
                ),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Float64Array::from(vec![None; rows.len()])),
                Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
            ],
        )
        .unwrap()
    };
    // Feeds the batches one watermark step each, sheds keys after each step as the operator
    // does, and returns the flags of `a`'s rows and the keys forgotten.
    let run = |max_keys: u64| {
        let op = plan(&format!(
            "method = \"threshold\"\nvalue = \"temperature\"\nmax = 50\nwarmup = 3\n\
             group_by = [\"device_id\"]\nmax_keys = {max_keys}"
        ))
        .unwrap();
        let mut state = state::AnomalyState::new(op.plan.clone()).unwrap();
        let steps = [
            rows(&[
                ("a", 0, 10.0),
                ("a", 1, 10.0),
                ("a", 2, 10.0),
                ("a", 3, 99.0),
            ]),
            rows(&[("b", 10, 10.0), ("c", 11, 10.0)]),
            rows(&[("b", 12, 10.0), ("c", 13, 10.0), ("a", 20, 99.0)]),
        ];
        let (mut flags, mut forgotten) = (Vec::new(), 0);
        for (step, batch) in steps.iter().enumerate() {
            state.absorb(batch, 0).unwrap();
            let flushed = state.advance(Some(100_000 * (step as u64 + 1))).unwrap();
            let out = flushed.rows.unwrap();
            let devices = out.column(0).as_string::<i32>();
            let flagged = out.column(6).as_boolean();
            for row in 0..out.num_rows() {
                if devices.value(row) == "a" {
                    flags.push(flagged.value(row));
                }
            }
            forgotten += state.shed_keys(op.plan.max_keys);
            assert!(state.keys_held() <= op.plan.max_keys);
        }
        (flags, forgotten, state.keys_held())
    };
    assert_eq!(run(3), (vec![false, false, false, true, true], 0, 3));
    // With 2 keys, `a` (last seen at 3 s) goes when `c` arrives, and its spike at 20 s is in
    // a fresh warm-up; then `b` (last seen at 12 s) makes room for `a`.
    assert_eq!(run(2), (vec![false, false, false, true, false], 2, 2));

    let errors = plan("method = \"ewma\"\nvalue = \"temperature\"\nmax_keys = 0").unwrap_err();
    assert_eq!(paths(&errors), ["max_keys"]);
}

/// Points per second on one core through [`state::AnomalyState`] (buffering, key lookup,
/// event-time sort, detection and the output columns; no timely, no exchange), with 10,000
/// keys, for every method; and the state bytes per key once every window is full.
///
/// Each key's values are noise around 20 (a triangular distribution 2 wide, from a hash of
/// the row number) with a 15-unit spike in about one row in a thousand, so windows hold
/// distinct values. Before timing, every key gets enough rows to fill its windows (untimed),
/// so the timed 5,000,000 points (500 per key, in batches of 8192, times increasing so every
/// batch is judged at once) run on full windows. Each method runs 3 times; the best and the
/// median rate are printed, by wall-clock time and by the thread's CPU time (user + system,
/// from `/proc/thread-self/stat` on Linux), which time slicing on a busy machine does not
/// inflate.
///
/// ```sh
/// cargo test --release -p edgeflow-operators --lib anomaly_throughput -- --ignored --nocapture
/// ```
#[test]
#[ignore = "throughput measurement; run in release mode"]
fn anomaly_throughput() {
    use edgeflow_engine::arrow::array::TimestampMillisecondArray;
    use edgeflow_engine::arrow::array::{Float64Array, RecordBatch, StringArray};
    use edgeflow_engine::schema::UTC;

    const KEYS: usize = 10_000;
    const POINTS: usize = 5_000_000;
    const BATCH: usize = 8192;
    const RUNS: usize = 3;
    let names: Vec<String> = (0..KEYS).map(|k| format!("dev-{k:05}")).collect();
    let input = schema();
    let hash = |i: u64| {
        // splitmix64
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // Rows `start..start + len` (row i: key i mod KEYS, second i / KEYS).
    let make = |start: usize, len: usize| {
        let rows = start..start + len;
        let value = |i: usize| {
            let h = hash(i as u64);
            let (u1, u2) = ((h & 0xffff_ffff) as f64, (h >> 32) as f64);
            let noise = (u1 + u2) / 4_294_967_296.0 - 1.0;
            20.0 + noise + if h % 1000 == 7 { 15.0 } else { 0.0 }
        };
        RecordBatch::try_new(
            input.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.clone().map(|i| &names[i % KEYS]),
                )),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(
                        rows.clone().map(|i| (i / KEYS) as i64 * 1000),
                    )
                    .with_timezone(UTC),
                ),
                Arc::new(Float64Array::from_iter_values(rows.clone().map(value))),
                Arc::new(Float64Array::from_iter_values(rows.clone().map(|_| 80.0))),
                Arc::new(StringArray::from_iter_values(rows.map(|_| "x"))),
            ],
        )
        .unwrap()
    };
    let feed = |state: &mut state::AnomalyState, batch: &RecordBatch| {
        let times = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let (first, last) = (times.value(0), times.value(times.len() - 1));
        state.absorb(batch, first as u64).unwrap();
        let flushed = state.advance(Some(last as u64 + 1)).unwrap();
        flushed.rows.map_or(0, |r| r.num_rows())
    };
    // (options, rows per key that fill its windows)
    let methods = [
        ("method = \"threshold\"\nmax = 80", 1),
        ("method = \"zscore\"\nwindow = 100", 101),
        ("method = \"ewma\"", 1),
        ("method = \"mad\"\nwindow = 100", 101),
        ("method = \"spike_dip\"\nhistory = 100", 101),
        ("method = \"change_point\"\nwindow = 100", 101),
        ("method = \"flatline\"\nduration = \"10m\"", 1),
        ("method = \"rate_of_change\"\nmax_rate = 1", 1),
        ("method = \"gap\"\nduration = \"10m\"", 1),
        (
            "method = \"ensemble\"\nmembers = [{ method = \"zscore\" }, { method = \"mad\" }, \
             { method = \"ewma\" }]",
            101,
        ),
        ("method = \"spike_dip\"\nhistory = 1500\nwarmup = 400", 1501),
    ];
    println!(
        "| method | best | median | best per CPU s | median per CPU s | state bytes per key |\n\
         |---|---|---|---|---|---|"
    );
    // This thread's CPU time in seconds (Linux; None elsewhere), at the kernel's 10 ms tick.
    let cpu_seconds = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the command name (which ends with the last ')'): utime is the 12th and
        // stime the 13th of them, in clock ticks (100 per second on Linux).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    };
    // ANOMALY_BENCH=mad runs only the methods whose options contain "mad" (for profiling).
    let only = std::env::var("ANOMALY_BENCH").unwrap_or_default();
    for (options, fill) in methods
        .into_iter()
        .filter(|(o, _)| o.contains(only.as_str()))
    {
        let value = if options.contains("gap") {
            ""
        } else {
            "value = \"temperature\"\n"
        };
        let op = plan(&format!("group_by = [\"device_id\"]\n{value}{options}")).unwrap();
        let warm = fill * KEYS;
        let timed: Vec<RecordBatch> = (warm..warm + POINTS)
            .step_by(BATCH)
            .map(|start| make(start, BATCH.min(warm + POINTS - start)))
            .collect();
        let mut rates = Vec::new();
        let mut cpu_rates = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let mut state = state::AnomalyState::new(op.plan.clone()).unwrap();
            for start in (0..warm).step_by(BATCH) {
                feed(&mut state, &make(start, BATCH.min(warm - start)));
            }
            let started = std::time::Instant::now();
            let cpu_started = cpu_seconds();
            let mut out_rows = 0;
            for batch in &timed {
                out_rows += feed(&mut state, batch);
            }
            let elapsed = started.elapsed().as_secs_f64();
            if let (Some(before), Some(after)) = (cpu_started, cpu_seconds()) {
                cpu_rates.push(POINTS as f64 / (after - before).max(0.01) / 1e6);
            }
            assert!(out_rows >= POINTS, "{options}: {out_rows} rows out");
            rates.push(POINTS as f64 / elapsed / 1e6);
            bytes = state.state_bytes() / KEYS;
        }
        rates.sort_by(f64::total_cmp);
        cpu_rates.sort_by(f64::total_cmp);
        let cpu = |at: usize| {
            cpu_rates
                .get(at)
                .map_or("-".into(), |r| format!("{r:.2} M"))
        };
        println!(
            "| {} | {:.2} M | {:.2} M | {} | {} | {} |",
            options.replace('\n', ", "),
            rates[RUNS - 1],
            rates[RUNS / 2],
            cpu(cpu_rates.len().saturating_sub(1)),
            cpu(cpu_rates.len() / 2),
            bytes
        );
    }
}
