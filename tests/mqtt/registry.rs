//! The `mqtt_registry` example against mosquitto: a device registry kept as retained MQTT
//! messages enriches and calibrates readings, and a new retained entry changes the readings
//! that follow it.

use std::path::Path;

use super::*;

#[test]
fn the_mqtt_registry_example_enriches_readings_from_retained_messages() {
    let broker = Broker::start(Security::Plain);
    // Retained before edgeflow starts: its subscription receives them at once.
    broker.publish_retained(
        1,
        &[
            (
                "registry/devices/d1",
                br#"{"site": "plant-1", "temp_scale": 2.0, "temp_offset": 1.0}"#,
            ),
            (
                "registry/devices/d2",
                br#"{"site": "plant-2", "temp_scale": 1.0, "temp_offset": 0.0}"#,
            ),
        ],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = CliRun::start("mqtt_registry.toml", &broker, dir.path());
    run.wait_log("edgeflow did not connect both sources", |log| {
        log.matches("Connected to MQTT broker").count() >= 2
    });
    // The subscriptions follow the CONNACKs, and the retained entries follow them.
    std::thread::sleep(Duration::from_millis(1_000));
    broker.publish(
        1,
        &[
            ("sensors/d1", br#"{"ts": 1717200000000, "temperature": 10}"#),
            ("sensors/d2", br#"{"ts": 1717200000000, "temperature": 20}"#),
            ("sensors/d9", br#"{"ts": 1717200000000, "temperature": 30}"#),
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    // d2 is recalibrated: readings from now on use the new entry, earlier ones keep theirs.
    broker.publish_retained(
        1,
        &[(
            "registry/devices/d2",
            br#"{"site": "plant-2", "temp_scale": 10.0, "temp_offset": 0.5}"#,
        )],
    );
    std::thread::sleep(Duration::from_millis(700));
    broker.publish(
        1,
        &[("sensors/d2", br#"{"ts": 1717200001000, "temperature": 20}"#)],
    );
    std::thread::sleep(Duration::from_millis(700));
    let log = run.stop();
    assert_contains!(log, "registry_entries: 2");
    assert_contains!(log, "registry_updates: 3");

    let mut rows = parquet_rows(&dir.path().join("out/mqtt_registry"));
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        rows,
        [
            ("d1".into(), 1717200000000, Some("plant-1".into()), 21.0),
            ("d2".into(), 1717200000000, Some("plant-2".into()), 20.0),
            ("d2".into(), 1717200001000, Some("plant-2".into()), 200.5),
            // Unknown: passed with nulls, its temperature left as it was.
            ("d9".into(), 1717200000000, None, 30.0),
        ],
        "{log}"
    );
}

/// `(device_id, ts, site, temperature)` of every row in the Parquet files under `folder`.
fn parquet_rows(folder: &Path) -> Vec<(String, i64, Option<String>, f64)> {
    let mut rows = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let file = std::fs::File::open(&path).expect("open Parquet");
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .expect("Parquet footer")
                    .build()
                    .expect("reader");
            for batch in reader {
                let batch = [batch.expect("Parquet batch")];
                let devices = strings(&batch, "device_id");
                let sites = strings(&batch, "site");
                let times = times(&batch, "ts");
                let temperatures = floats(&batch, "temperature");
                for row in 0..devices.len() {
                    rows.push((
                        devices[row].clone().expect("device id"),
                        times[row],
                        sites[row].clone(),
                        temperatures[row].expect("temperature"),
                    ));
                }
            }
        }
    }
    rows
}
