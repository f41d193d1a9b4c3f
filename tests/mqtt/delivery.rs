//! QoS 1 delivery across a broker restart and an engine restart, and persistent sessions.

use super::*;

#[test]
fn qos1_stream_survives_a_broker_restart_mid_stream_without_loss() {
    const MESSAGES: usize = 100_000;
    let mut broker = Broker::start(Security::Plain);
    // Deduplicate on (device, ts), then count per device and second: the windows must match
    // an oracle over the published rows exactly.
    let pipeline = Running::start_with(
        &format!(
            "url = \"{}\"\nclient_id = \"restart-test\"\nmax_out_of_orderness = \"5s\"\n{READING_SOURCE}",
            broker.url()
        ),
        &[
            (
                "clean",
                r#"key = ["device_id"]
dedup = { on = ["device_id", "ts"], horizon = "10m" }
max_keys = 1000000"#,
            ),
            (
                "window",
                r#"size = "1s"
group_by = ["device_id"]
aggregates = { n = "count()" }"#,
            ),
        ],
    );
    pipeline.wait_connected();
    let rows = readings(MESSAGES, 10);
    let expected: BTreeSet<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let publisher = publish_with_sink(&broker.url(), rows, 500);

    // Kill the broker (SIGTERM: it saves the sessions) once a third has arrived.
    wait_for("a third of the messages", Duration::from_secs(120), || {
        pipeline.main_rows() >= MESSAGES / 3
    });
    broker.stop();
    let during = pipeline.main_rows();
    std::thread::sleep(Duration::from_millis(1500));
    broker.start_again();

    let published = publisher.join().expect("publisher thread");
    assert_eq!(
        published, MESSAGES as u64,
        "the sink reports every row acknowledged"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (keys, total) = distinct_keys(&pipeline.main.batches());
        if keys.len() >= MESSAGES {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected.difference(&keys).take(10).collect();
            panic!(
                "after 120 s: {} distinct of {MESSAGES} ({total} rows), first missing {missing:?}, source {:?}\nbroker log:\n{}",
                keys.len(),
                pipeline.metrics.snapshot(),
                broker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (keys, total) = distinct_keys(&pipeline.main.batches());
    let reconnects = pipeline.value("reconnects");
    let session_lost = pipeline.value("session_lost");
    // Stopping closes every window.
    let operated = pipeline.operated.clone();
    pipeline.stop().expect("clean stop");
    let mut windows: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for batch in operated.batches() {
        let devices = strings(std::slice::from_ref(&batch), "device_id");
        let starts = times(std::slice::from_ref(&batch), "window_start");
        let counts = batch
            .column_by_name("n")
            .expect("n")
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        for ((device, start), n) in devices.into_iter().zip(starts).zip(counts) {
            *windows
                .entry((device.unwrap_or_default(), start))
                .or_insert(0) += n;
        }
    }
    let mut oracle: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (device, ts) in &expected {
        *oracle
            .entry((device.clone(), ts - ts.rem_euclid(1000)))
            .or_insert(0) += 1;
    }
    assert!(
        during < MESSAGES,
        "the broker went away mid-stream ({during} of {MESSAGES} in)"
    );
    assert_eq!(keys, expected, "every (device, ts) arrived");
    assert!(reconnects >= 1, "the source reconnected");
    assert_eq!(
        session_lost, 0,
        "the broker saved our session when it stopped"
    );
    // At least once: redelivery after the restart may repeat a few messages, never many.
    assert!(total - MESSAGES <= 5_000, "{} duplicates", total - MESSAGES);
    assert_eq!(
        windows.len(),
        oracle.len(),
        "one window per device and second"
    );
    assert_eq!(
        windows, oracle,
        "after dedup on (device, ts), the windows match the oracle"
    );
}

#[test]
fn persistent_session_delivers_what_was_published_while_the_engine_was_down() {
    let broker = Broker::start(Security::Plain);
    let options = format!(
        "url = \"{}\"\nclient_id = \"engine-restart\"\n{READING_SOURCE}",
        broker.url()
    );
    let first = Running::start(&options);
    first.wait_connected();
    let line = |i: i64| {
        format!(
            "{{\"device_id\": \"d1\", \"ts\": {}, \"value\": {i}}}\n",
            1_000 + i
        )
    };
    broker.publish_lines(1, "sensors/d1", &(0..100).map(line).collect::<String>());
    wait_for("the first 100", Duration::from_secs(15), || {
        first.main_rows() == 100
    });
    first.stop().expect("first run stops cleanly");

    // While the engine is down.
    broker.publish_lines(1, "sensors/d1", &(100..300).map(line).collect::<String>());

    let second = Running::start(&options);
    wait_for("the 200 sent while down", Duration::from_secs(15), || {
        second.main_rows() >= 200
    });
    let (keys, _) = distinct_keys(&second.main.batches());
    let expected: BTreeSet<(String, i64)> =
        (100..300).map(|i| ("d1".to_string(), 1_000 + i)).collect();
    assert_eq!(keys, expected);
    second.stop().expect("second run stops cleanly");

    // Without a persistent session, what is published while away is gone.
    let clean_options = options.replace(
        "client_id = \"engine-restart\"",
        "client_id = \"engine-restart-clean\"\nclean_session = true",
    );
    let third = Running::start(&clean_options);
    third.wait_connected();
    third.stop().expect("stops");
    broker.publish_lines(1, "sensors/d1", &(300..310).map(line).collect::<String>());
    let fourth = Running::start(&clean_options);
    fourth.wait_connected();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fourth.main_rows(), 0, "a clean session starts empty");
}

#[test]
fn engine_restarted_mid_stream_with_a_persistent_session_loses_nothing() {
    const MESSAGES: usize = 20_000;
    let broker = Broker::start(Security::Plain);
    let options = format!(
        "url = \"{}\"\nclient_id = \"engine-restart-mid-stream\"\n{READING_SOURCE}",
        broker.url()
    );
    let first = Running::start(&options);
    first.wait_connected();
    let rows = readings(MESSAGES, 5);
    let expected: BTreeSet<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let publisher = publish_with_sink(&broker.url(), rows, 100);
    wait_for("some messages", Duration::from_secs(60), || {
        first.main_rows() >= MESSAGES / 5
    });
    let first_rows = first.main.clone();
    first.stop().expect("the first run stops cleanly");
    let during = first_rows
        .batches()
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>();
    // The publisher goes on while the engine is down.
    std::thread::sleep(Duration::from_millis(1000));
    let second = Running::start(&options);
    assert_eq!(publisher.join().expect("publisher"), MESSAGES as u64);
    let union = || {
        let mut batches = first_rows.batches();
        batches.extend(second.main.batches());
        distinct_keys(&batches)
    };
    wait_for(
        "every message across both runs",
        Duration::from_secs(60),
        || union().0.len() >= MESSAGES,
    );
    let (keys, _) = union();
    assert!(
        during < MESSAGES,
        "the engine stopped mid-stream ({during} in)"
    );
    assert_eq!(keys, expected);
}
