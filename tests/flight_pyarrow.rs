//! The `flight` sink through the `edgeflow` binary against a real `pyarrow.flight` collector
//! (`tests/python/flight_server.py`) over mutual TLS with an rcgen PKI made here: every row of
//! a CSV file arrives once, in segments with increasing ids, acknowledged with the
//! `SegmentAck` JSON so the spool empties; and a collector with an untrusted certificate is
//! reported with the endpoint and the TLS reason while the rows wait in the spool.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::ipc::reader::FileReader;

use crate::pki::Pki;
use crate::util::{edgeflow, python, repo, run, write_query};

/// The Python collector; stopped (stdin closed, then killed) when dropped.
struct Collector {
    child: Child,
    port: u16,
}

impl Collector {
    fn start(cert: &(PathBuf, PathBuf, String, String), client_ca: &Path, out: &Path) -> Self {
        let mut child = Command::new(python())
            .arg(repo().join("tests/python/flight_server.py"))
            .arg(&cert.0)
            .arg(&cert.1)
            .arg(client_ca)
            .arg(out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python collector starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the collector did not say its port: {line:?}"));
        Self { child, port }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ROWS: usize = 4500;

/// `device_id,ts,value` rows with exactly representable values.
fn write_csv(path: &Path) -> Vec<(String, i64, f64)> {
    let mut text = String::from("device_id,ts,value\n");
    let mut rows = Vec::new();
    for i in 0..ROWS {
        let row = (
            format!("dev-{}", i % 7),
            1_717_200_000_000 + i as i64 * 100,
            i as f64 * 0.25,
        );
        text.push_str(&format!("{},{},{}\n", row.0, row.1, row.2));
        rows.push(row);
    }
    std::fs::write(path, text).unwrap();
    rows
}

fn query(
    dir: &Path,
    csv: &Path,
    port: u16,
    pki: &Pki,
    client: &(PathBuf, PathBuf, String, String),
) -> PathBuf {
    write_query(
        dir,
        "upstream.toml",
        &format!(
            r#"
[pipeline]
name = "interop"

[sources.readings]
type = "file"
path = "{csv}"
schema = {{ device_id = "string", ts = "timestamp_ms", value = "float64" }}
event_time = "ts"

[sinks.upstream]
type = "flight"
inputs = ["readings"]
endpoint = "https://127.0.0.1:{port}"
server_name = "localhost"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
spool = "{spool}"
batch_rows = 1000
compression = "zstd"
retry_initial = "50ms"
retry_max = "200ms"
drain_timeout = "2s"
"#,
            csv = csv.display(),
            ca = pki.ca.display(),
            cert = client.0.display(),
            key = client.1.display(),
            spool = dir.join("spool").display(),
        ),
    )
}

/// Segment files left in a spool folder.
fn spooled(spool: &Path) -> Vec<String> {
    std::fs::read_dir(spool)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".arrows"))
        .collect()
}

#[test]
fn every_row_reaches_a_pyarrow_collector_over_mutual_tls_and_the_spool_empties() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "flight-test-ca");
    let server = pki.leaf("collector", &["localhost"]);
    let client = pki.leaf("gateway-7", &[]);
    let out = dir.path().join("received");
    std::fs::create_dir(&out).unwrap();
    let collector = Collector::start(&server, &pki.ca, &out);
    let csv = dir.path().join("readings.csv");
    let mut expected = write_csv(&csv);
    let query = query(dir.path(), &csv, collector.port, &pki, &client);

    let (output, _, stderr) = run(edgeflow().arg("run").arg(&query).arg("--no-status"));
    assert!(output.status.success(), "edgeflow run failed:\n{stderr}");
    assert!(
        spooled(&dir.path().join("spool")).is_empty(),
        "segments left in the spool:\n{stderr}"
    );

    // Every put is logged by the collector: one per segment, ids strictly increasing.
    let puts = std::fs::read_to_string(out.join("puts.jsonl")).unwrap();
    let puts: Vec<serde_json::Value> = puts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<u64> = puts
        .iter()
        .map(|p| p["segment_id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids {ids:?}");
    assert!(puts.iter().all(|p| p["stream"] == "interop.upstream"));
    let put_rows: u64 = puts.iter().map(|p| p["rows"].as_u64().unwrap()).sum();
    assert_eq!(put_rows, ROWS as u64);
    assert!(puts.len() >= ROWS / 1000, "{} segments", puts.len());

    // What the collector stored holds exactly the rows of the file.
    let mut received = Vec::new();
    for id in &ids {
        let path = out.join(format!("interop.upstream-{id:020}.arrow"));
        let reader = FileReader::try_new(std::fs::File::open(&path).unwrap(), None).unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
            let devices = column("device_id");
            let devices = devices.as_any().downcast_ref::<StringArray>().unwrap();
            let ts = column("ts");
            let ts = ts
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let values = column("value");
            let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
            for i in 0..batch.num_rows() {
                received.push((devices.value(i).to_string(), ts.value(i), values.value(i)));
            }
        }
    }
    assert_eq!(received.len(), ROWS);
    let key = |r: &(String, i64, f64)| (r.1, r.0.clone());
    received.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(received, expected);
}

#[test]
fn an_untrusted_collector_is_reported_with_endpoint_and_tls_reason_and_rows_stay_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "flight-test-ca");
    let client = pki.leaf("gateway-7", &[]);
    // The collector's certificate comes from a CA the gateway does not trust.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = Pki::new(&other_dir, "impostor-ca");
    let server = other.leaf("collector", &["localhost"]);
    let out = dir.path().join("received");
    std::fs::create_dir(&out).unwrap();
    let collector = Collector::start(&server, &pki.ca, &out);
    let csv = dir.path().join("readings.csv");
    write_csv(&csv);
    let query = query(dir.path(), &csv, collector.port, &pki, &client);

    let (output, _, stderr) = run(edgeflow().arg("run").arg(&query).arg("--no-status"));
    // The link failing is not a pipeline failure: the rows wait in the spool.
    assert!(output.status.success(), "edgeflow run failed:\n{stderr}");
    assert_contains!(
        stderr,
        format!(
            "TLS handshake with Flight collector https://127.0.0.1:{} failed",
            collector.port
        )
    );
    assert_contains!(stderr, "UnknownIssuer");
    let left = spooled(&dir.path().join("spool"));
    let rows: u64 = left
        .iter()
        .map(|name| {
            let stem = name.trim_end_matches(".arrows");
            stem.split_once('-').unwrap().1.parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(rows, ROWS as u64, "every row waits in the spool: {left:?}");
    assert!(
        !out.join("puts.jsonl").exists(),
        "nothing reached the collector"
    );
}
