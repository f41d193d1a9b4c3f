//! Gateway to cloud end to end (issue 9): `edgeflow run` with a `flight` sink and a spool
//! sending to `edgeflow collect` over mutual TLS (certificates from `edgeflow certs`), the rows
//! sent (a CSV file) compared with the collector's Parquet by DuckDB
//! (`tests/python/check_upstream.py`):
//! 1. the collector is killed mid-stream and restarted on the same port a few seconds later:
//!    every row arrives exactly once;
//! 2. the gateway is killed (SIGKILL) with a full spool and restarted: the spool drains and
//!    every row arrives exactly once;
//! 3. a spool that fills while the collector is away drops its oldest segments, counts their
//!    rows, and the rest arrives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::collect::{Collector, make_certs};
use crate::http::free_port;
use crate::util::{edgeflow, write_query};

/// 2025-11-26T00:00:00Z in milliseconds.
const T0: i64 = 1_764_115_200_000;

/// Writes `rows` readings `dev-<i%5>, T0 + i*step_ms, i/2` (a header-only file for 0 rows).
fn write_csv(path: &Path, rows: usize, step_ms: i64) {
    let mut text = String::from("device_id,ts,value\n");
    for i in 0..rows {
        text.push_str(&format!(
            "dev-{},{},{}\n",
            i % 5,
            T0 + i as i64 * step_ms,
            i as f64 * 0.5
        ));
    }
    fs::write(path, text).unwrap();
}

/// The gateway's query file: the CSV through a `flight` sink to the collector on `port`.
fn gateway_query(dir: &Path, certs: &Path, port: u16, speed: &str, sink_options: &str) -> PathBuf {
    write_query(
        dir,
        "gateway.toml",
        &format!(
            r#"
[pipeline]
name = "plant1"

[sources.readings]
type = "file"
path = "{csv}"
schema = {{ device_id = "string", ts = "timestamp_ms", value = "float64" }}
event_time = "ts"
speed = {speed}

[sinks.upstream]
type = "flight"
inputs = ["readings"]
endpoint = "https://localhost:{port}"
ca = "{certs}/ca.pem"
cert = "{certs}/gw-01.pem"
key = "{certs}/gw-01-key.pem"
spool = "{spool}"
batch_rows = 100
batch_interval = "500ms"
retry_initial = "100ms"
retry_max = "500ms"
{sink_options}
"#,
            csv = dir.join("readings.csv").display(),
            certs = certs.display(),
            spool = dir.join("spool").display(),
        ),
    )
}

/// Starts `edgeflow run` on one worker (rows keep their order), stderr to `log`.
fn start_gateway(query: &Path, log: &Path) -> Child {
    edgeflow()
        .arg("run")
        .arg(query)
        .args(["--no-status", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .expect("edgeflow run starts")
}

/// Waits for the gateway to exit on its own; asserts success; returns its log.
fn finish_gateway(mut child: Child, log: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "edgeflow run failed ({status}):\n{text}");
            return text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "edgeflow run did not finish:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (segments, rows) waiting in a spool folder (`<id>-<rows>.arrows` files).
fn spooled(spool: &Path) -> (usize, u64) {
    let Ok(entries) = fs::read_dir(spool) else {
        return (0, 0);
    };
    let rows: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".arrows")?;
            stem.rsplit_once('-')?.1.parse().ok()
        })
        .collect();
    (rows.len(), rows.iter().sum())
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn compare(dir: &Path, collected: &Path) -> Value {
    let csv = dir.join("readings.csv");
    let stdout = crate::util::check_with_python("check_upstream.py", &[&csv, collected]);
    serde_json::from_str(stdout.trim()).expect("check_upstream.py prints JSON")
}

#[test]
fn a_link_cut_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), "certs", &["gw-01"]);
    let collected = dir.path().join("collected");
    let port = free_port();
    let collector = Collector::start(&certs, &collected, port, &dir.path().join("collect-1.log"));
    // 3000 rows over 30 s of event time, replayed at 3x: about 10 s of sending.
    write_csv(&dir.path().join("readings.csv"), 3000, 10);
    let query = gateway_query(dir.path(), &certs, port, "3", r#"drain_timeout = "60s""#);
    let gateway_log = dir.path().join("gateway.log");
    let gateway = start_gateway(&query, &gateway_log);

    // Let some segments through, then kill the collector (no goodbye) for a while.
    let stored = collected.join("_segments/gateway=gw-01/plant1.upstream");
    wait_until(
        "the collector stored segments",
        Duration::from_secs(30),
        || fs::read_dir(&stored).is_ok_and(|d| d.count() >= 3),
    );
    drop(collector);
    let spool = dir.path().join("spool");
    wait_until(
        "segments wait in the spool",
        Duration::from_secs(30),
        || spooled(&spool).0 >= 3,
    );
    std::thread::sleep(Duration::from_secs(2));
    let collector = Collector::start(&certs, &collected, port, &dir.path().join("collect-2.log"));

    let log = finish_gateway(gateway, &gateway_log, Duration::from_secs(120));
    assert_eq!(spooled(&spool), (0, 0), "the spool drained:\n{log}");
    let check = compare(dir.path(), &collected);
    assert_eq!(check["sent"], 3000, "{check}");
    assert_eq!(
        check["received"], 3000,
        "every row arrived exactly once: {check}\n{log}"
    );
    assert_eq!(check["distinct"], 3000, "{check}");
    assert_eq!(check["missing"], 0, "{check}");
    assert_eq!(check["extra"], 0, "{check}");
    let (clean, collector_log) = collector.stop();
    assert!(clean, "{collector_log}");
    // The restarted collector received the segments that waited during the cut.
    assert_contains!(
        collector_log,
        "Segment stored gateway=gw-01 stream=plant1.upstream"
    );
}

#[test]
fn a_killed_gateway_drains_its_spool_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), "certs", &["gw-01"]);
    let collected = dir.path().join("collected");
    // Nobody listens yet: every segment stays in the spool.
    let port = free_port();
    write_csv(&dir.path().join("readings.csv"), 2000, 100);
    let query = gateway_query(
        dir.path(),
        &certs,
        port,
        r#""max""#,
        r#"drain_timeout = "120s""#,
    );
    let spool = dir.path().join("spool");
    let first_log = dir.path().join("gateway-1.log");
    let mut first = start_gateway(&query, &first_log);
    wait_until("all rows are spooled", Duration::from_secs(60), || {
        spooled(&spool).1 == 2000
    });
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_eq!(spooled(&spool).1, 2000, "the spool survived SIGKILL");

    // The collector comes up; the gateway restarts with no new input and drains the spool.
    let collector = Collector::start(&certs, &collected, port, &dir.path().join("collect.log"));
    write_csv(&dir.path().join("readings.csv"), 0, 100);
    let second_log = dir.path().join("gateway-2.log");
    let second = start_gateway(&query, &second_log);
    let log = finish_gateway(second, &second_log, Duration::from_secs(120));
    assert_eq!(spooled(&spool), (0, 0), "the spool drained:\n{log}");
    write_csv(&dir.path().join("readings.csv"), 2000, 100);
    let check = compare(dir.path(), &collected);
    assert_eq!(check["received"], 2000, "{check}\n{log}");
    assert_eq!(check["distinct"], 2000, "{check}");
    assert_eq!(check["missing"], 0, "{check}");
    assert_eq!(check["extra"], 0, "{check}");
    let (clean, collector_log) = collector.stop();
    assert!(clean, "{collector_log}");
    let stopped = collector_log
        .lines()
        .find(|l| l.contains("Collector stopped"))
        .unwrap();
    assert_contains!(stopped, "rows=2000 duplicates=0");
}

#[test]
fn a_full_spool_drops_the_oldest_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), "certs", &["gw-01"]);
    let collected = dir.path().join("collected");
    let port = free_port();
    write_csv(&dir.path().join("readings.csv"), 5000, 100);
    let options = r#"
max_spool_size = "16KiB"
batch_bytes = "8KiB"
full_policy = "drop_oldest"
drain_timeout = "1s"
compression = "none"
"#;
    let query = gateway_query(dir.path(), &certs, port, r#""max""#, options);
    let first_log = dir.path().join("gateway-1.log");
    let log = finish_gateway(
        start_gateway(&query, &first_log),
        &first_log,
        Duration::from_secs(60),
    );
    let spool = dir.path().join("spool");
    let (segments, kept) = spooled(&spool);
    assert!(
        segments > 0 && kept < 5000,
        "{segments} segments, {kept} rows kept:\n{log}"
    );
    // The run's summary counts the dropped rows under their reason.
    let dropped: u64 = log
        .lines()
        .find_map(|l| {
            l.trim_start()
                .starts_with("sink")
                .then(|| l.split("spool_full: ").nth(1))?
        })
        .map(|n| n.trim().replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no spool_full count in the summary:\n{log}"));
    assert_eq!(
        dropped + kept,
        5000,
        "dropped {dropped} + kept {kept}:\n{log}"
    );
    assert_contains!(log, "dropped the oldest unsent segment");

    let collector = Collector::start(&certs, &collected, port, &dir.path().join("collect.log"));
    write_csv(&dir.path().join("readings.csv"), 0, 100);
    let options = options.replace(r#"drain_timeout = "1s""#, r#"drain_timeout = "60s""#);
    let query = gateway_query(dir.path(), &certs, port, r#""max""#, &options);
    let second_log = dir.path().join("gateway-2.log");
    let log = finish_gateway(
        start_gateway(&query, &second_log),
        &second_log,
        Duration::from_secs(90),
    );
    assert_eq!(spooled(&spool), (0, 0), "the spool drained:\n{log}");
    write_csv(&dir.path().join("readings.csv"), 5000, 100);
    let check = compare(dir.path(), &collected);
    assert_eq!(check["received"], kept, "{check}");
    assert_eq!(check["distinct"], kept, "{check}");
    assert_eq!(check["missing"], dropped, "{check}");
    assert_eq!(check["extra"], 0, "{check}");
    // The oldest rows went: everything received is newer than everything dropped.
    assert!(
        check["min_received_ts"].as_i64() > check["max_missing_ts"].as_i64(),
        "{check}"
    );
    drop(collector);
}
