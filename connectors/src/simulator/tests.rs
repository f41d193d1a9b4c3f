//! Tests of the simulator: options, determinism, jitter, bounds, pacing and shutdown.

use std::time::{Duration, Instant};

use edgeflow_engine::arrow::array::{Array, AsArray, RecordBatch};
use edgeflow_engine::arrow::compute::concat_batches;
use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;
use edgeflow_engine::schema::{event_time_column, timestamp_type};
use edgeflow_engine::{OptionError, SourceContext};

use super::*;

fn table(text: &str) -> toml::Table {
    text.parse().unwrap()
}

fn config(text: &str) -> SimulatorConfig {
    parse_options(table(text)).unwrap()
}

fn first_error(text: &str) -> OptionError {
    match parse_options::<SimulatorConfig>(table(text)) {
        Err(error) => error,
        Ok(config) => config.schema().unwrap_err().remove(0),
    }
}

/// Runs a built simulator to the end and returns every batch.
async fn collect(config: &SimulatorConfig) -> Vec<RecordBatch> {
    let schema = config.schema().unwrap();
    let source = config.build().unwrap();
    let (ctx, mut receiver, _trigger) = SourceContext::for_test("sim", schema, 1_000);
    let task = tokio::spawn(source.run(ctx));
    let mut batches = Vec::new();
    while let Some(batch) = receiver.recv().await {
        batches.push(batch);
    }
    task.await.unwrap().unwrap();
    batches
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(batches[0].schema_ref(), batches).unwrap()
}

const FAST: &str = "start = \"2024-01-01T00:00:00Z\"\nspeed = \"max\"\n";

#[test]
fn the_default_form_parses_and_builds() {
    let config = config("");
    let schema = config.schema().unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["device_id", "ts", "temperature", "humidity"]);
    assert_eq!(event_time_column(&schema), Some((1, "ts")));
    assert_eq!(schema.field(1).data_type(), &timestamp_type());
    assert_eq!(config.speed, Speed::REAL_TIME);
    assert_eq!(config.watermark(), WatermarkPolicy::default());
    config.build().unwrap();
}

#[test]
fn the_example_form_parses_and_builds() {
    let config = config(
        r#"
schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64", humidity = "float64" }
event_time = "ts"
devices = 10
rate = "10/s"
duration = "60s"
seed = 42
start = "2024-01-01T00:00:00Z"
speed = 1.0
jitter = "500ms"
max_out_of_orderness = "1s"
idle_timeout = "off"
period = "5m"
spike_probability = 0.0
missing_probability = 0
device_field = "device_id"
"#,
    );
    assert_eq!(config.rate.per_second, 10.0);
    assert_eq!(config.settings().unwrap().limit, Some(6_000));
    assert_eq!(
        config.watermark(),
        WatermarkPolicy {
            max_out_of_orderness: Duration::from_secs(1),
            idle_timeout: None,
        }
    );
    config.build().unwrap();
}

#[test]
fn bad_options_name_their_path() {
    let cases = [
        ("rate = \"ten/s\"", "rate"),
        ("rate = \"0/s\"", "rate"),
        ("devices = 0", "devices"),
        ("devices = -1", "devices"),
        ("start = \"tomorrow\"", "start"),
        ("speed = 0", "speed"),
        ("duration = \"a while\"", "duration"),
        ("jitter = \"x\"", "jitter"),
        ("spike_probability = 1.5", "spike_probability"),
        ("missing_probability = -0.1", "missing_probability"),
        ("period = \"0s\"", "period"),
        ("event_time = \"time\"", "event_time"),
        ("device_field = \"temperature\"", "device_field"),
        (
            "schema = { ts = \"timestamp_ms\", t = \"flot\" }",
            "schema.t",
        ),
    ];
    for (text, path) in cases {
        let error = first_error(text);
        assert_eq!(error.path.join("."), path, "{text}: {error}");
    }
    let error = first_error("device_field = \"devce_id\"");
    assert_eq!(error.hint.as_deref(), Some("did you mean 'device_id'?"));
    assert!(error.message.contains("'devce_id'"), "{error}");
    let error = first_error("devcies = 3");
    assert!(error.message.contains("devcies"), "{error}");
    let start = first_error("start = \"tomorrow\"");
    assert!(start.message.contains("'tomorrow'"), "{start}");
}

#[test]
fn build_refuses_options_that_fail_their_checks() {
    let error = config("devices = 0").build().err().unwrap();
    assert!(error.to_string().starts_with("devices:"), "{error}");
}

#[test]
fn a_schema_without_the_device_field_still_works() {
    let config = config(&format!(
        "{FAST}count = 4\nschema = {{ time = \"timestamp\", v = \"float64\", zone = \"string\" }}"
    ));
    let settings = config.settings().unwrap();
    assert_eq!(settings.device_field, None);
    assert_eq!(settings.event_time, 0);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_rows() {
    let text = format!("{FAST}devices = 5\nrate = \"20/s\"\ncount = 5000\njitter = \"200ms\"");
    let a = concat(&collect(&config(&format!("{text}\nseed = 1"))).await);
    let b = concat(&collect(&config(&format!("{text}\nseed = 1"))).await);
    let c = concat(&collect(&config(&format!("{text}\nseed = 2"))).await);
    assert_eq!(a.num_rows(), 5_000);
    assert_eq!(a, b);
    assert_ne!(a.column(2), c.column(2));
    // Spikes and missing values show up at about their default rates.
    let temperature = a
        .column(2)
        .as_primitive::<edgeflow_engine::arrow::datatypes::Float64Type>();
    let nulls = temperature.null_count();
    assert!((10..=110).contains(&nulls), "{nulls} nulls");
    let spikes = temperature.iter().flatten().filter(|v| *v > 150.0).count();
    assert!(spikes <= 20, "{spikes} spikes");
}

#[tokio::test]
async fn jitter_moves_event_time_back_by_at_most_its_bound() {
    let config = config(&format!(
        "{FAST}devices = 4\nrate = \"50/s\"\nduration = \"20s\"\njitter = \"500ms\"\n\
         schema = {{ device_id = \"string\", ts = \"timestamp_ms\", nominal = \"timestamp_ms\" }}\n\
         event_time = \"ts\""
    ));
    let rows = concat(&collect(&config).await);
    assert_eq!(rows.num_rows(), 4 * 50 * 20);
    let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
    let nominal = rows.column(2).as_primitive::<TimestampMillisecondType>();
    let mut late = 0;
    for i in 0..rows.num_rows() {
        let back = nominal.value(i) - ts.value(i);
        assert!((0..=500).contains(&back), "row {i} moved back {back} ms");
        if i > 0 {
            assert!(
                nominal.value(i) >= nominal.value(i - 1),
                "emission follows nominal time"
            );
            if ts.value(i) < ts.value(i - 1) {
                late += 1;
            }
        }
    }
    assert!(late > 100, "only {late} out-of-order rows");
    assert_eq!(nominal.value(0), 1_704_067_200_000);
}

#[tokio::test]
async fn duration_bounds_event_time_and_batches_are_large() {
    let config = config(&format!(
        "{FAST}devices = 3\nrate = \"1000/s\"\nduration = \"10s\""
    ));
    let batches = collect(&config).await;
    let rows = concat(&batches);
    assert_eq!(rows.num_rows(), 30_000);
    assert!(batches.iter().all(|b| b.num_rows() <= MAX_BATCH_ROWS));
    assert!(batches.len() <= 10, "{} batches", batches.len());
    let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
    let span = ts.values().iter().max().unwrap() - ts.values().iter().min().unwrap();
    assert!(span < 10_000, "span {span}");
}

#[tokio::test]
async fn real_time_pacing_follows_the_wall_clock() {
    let slow = config("devices = 2\nrate = \"100/s\"\nduration = \"400ms\"\nseed = 3");
    let started = Instant::now();
    let batches = collect(&slow).await;
    let elapsed = started.elapsed();
    assert_eq!(concat(&batches).num_rows(), 80);
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // Ticks are sent as they come due: more than one batch, each holding whole ticks.
    assert!(batches.len() > 5, "{} batches", batches.len());
    assert!(batches.iter().all(|b| b.num_rows() % 2 == 0));

    // Speed 8 replays two seconds of event time in about a quarter of a second.
    let fast = config("devices = 2\nrate = \"100/s\"\nduration = \"2s\"\nspeed = 8");
    let started = Instant::now();
    assert_eq!(concat(&collect(&fast).await).num_rows(), 400);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

#[tokio::test]
async fn shutdown_stops_a_sleeping_simulator_at_once() {
    let config = config("rate = \"1/h\"");
    let source = config.build().unwrap();
    let (ctx, mut receiver, trigger) = SourceContext::for_test("sim", config.schema().unwrap(), 16);
    let task = tokio::spawn(source.run(ctx));
    // The first tick is due at once; the next one an hour later.
    let first = receiver.recv().await.unwrap();
    assert_eq!(first.num_rows(), 10);
    let stopping = Instant::now();
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the source stops promptly")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_millis(500));
    assert!(receiver.recv().await.is_none());
}

#[tokio::test]
async fn shutdown_stops_an_endless_fast_simulator() {
    let config = config("speed = \"max\"\ndevices = 100");
    let source = config.build().unwrap();
    let (ctx, mut receiver, trigger) = SourceContext::for_test("sim", config.schema().unwrap(), 4);
    let task = tokio::spawn(source.run(ctx));
    let mut rows = 0;
    while rows < 50_000 {
        rows += receiver.recv().await.unwrap().num_rows();
    }
    trigger.trigger();
    // Keep draining so a full channel cannot hide a missed shutdown.
    let drain = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the source stops promptly")
        .unwrap()
        .unwrap();
    drain.await.unwrap();
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = config("devices = 0\nschema = { ts = \"timestamp\", t = \"flot\" }")
        .schema()
        .unwrap_err();
    let paths: Vec<String> = errors.iter().map(|e| e.path.join(".")).collect();
    assert_eq!(paths, ["schema.t", "devices"]);
}

#[tokio::test]
async fn absurd_rates_and_speeds_do_not_panic() {
    for text in [
        "rate = \"1e-300/s\"",
        "speed = 1e-300",
        "rate = \"1e300/s\"\ncount = 10",
    ] {
        let config = config(text);
        let source = config.build().unwrap();
        let (ctx, mut receiver, trigger) =
            SourceContext::for_test("sim", config.schema().unwrap(), 16);
        let task = tokio::spawn(source.run(ctx));
        assert!(receiver.recv().await.is_some(), "{text}");
        trigger.trigger();
        let drain = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the source stops")
            .unwrap()
            .unwrap();
        drain.await.unwrap();
    }
}
