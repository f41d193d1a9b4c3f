//! `edgeflow collect` and `edgeflow certs` through the binary (issue 9): a `pyarrow.flight`
//! client (`tests/python/flight_put.py`) puts segments over mutual TLS with certificates from
//! `edgeflow certs`; DuckDB (`tests/python/check_collected.py`) reads the partitioned Parquet
//! back; resends are acked as duplicates without duplicate rows; clients without a
//! certificate, with one from another CA, or with an expired one are refused on both sides
//! while the collector keeps serving; `ListFlights` and `DoGet` read back what arrived.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use serde_json::Value;

use crate::http::free_port;
use crate::util::{edgeflow, python, repo, run};

/// 2025-11-26T00:00:00Z in milliseconds.
const MIDNIGHT: i64 = 1_764_115_200_000;

/// Runs `edgeflow certs --out <dir>/<name>` for `gateways`; returns the folder.
pub fn make_certs(dir: &Path, name: &str, gateways: &[&str]) -> PathBuf {
    make_certs_with_ca_name(dir, name, gateways).0
}

/// As [`make_certs`], also returning the CA's subject CN (printed by `edgeflow certs`).
fn make_certs_with_ca_name(dir: &Path, name: &str, gateways: &[&str]) -> (PathBuf, String) {
    let out = dir.join(name);
    let mut command = edgeflow();
    command.arg("certs").arg("--out").arg(&out);
    for gateway in gateways {
        command.arg("--gateway").arg(gateway);
    }
    let (output, stdout, stderr) = run(&mut command);
    assert!(
        output.status.success(),
        "edgeflow certs failed:\n{stdout}\n{stderr}"
    );
    let ca_name = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CA subject: CN="))
        .and_then(|l| l.strip_suffix(", O=edgeflow"))
        .unwrap_or_else(|| panic!("no CA subject in:\n{stdout}"))
        .to_owned();
    (out, ca_name)
}

/// An `edgeflow collect` in the background with its log in a file; killed when dropped.
pub struct Collector {
    child: Child,
    log: PathBuf,
    /// The port it listens on.
    pub port: u16,
}

impl Collector {
    /// Starts `edgeflow collect` with the certificates in `certs` (mutual TLS) on `port`,
    /// writing into `out`, and waits until the port accepts connections.
    pub fn start(certs: &Path, out: &Path, port: u16, log: &Path) -> Self {
        let log_file = fs::File::create(log).expect("collector log");
        let child = edgeflow()
            .env("RUST_LOG", "warn,edgeflow=info,edgeflow_connectors=debug")
            .arg("collect")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-cert")
            .arg(certs.join("collector.pem"))
            .arg("--tls-key")
            .arg(certs.join("collector-key.pem"))
            .arg("--client-ca")
            .arg(certs.join("ca.pem"))
            .arg("--out")
            .arg(out)
            .args(["--summary-secs", "1"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("edgeflow collect starts");
        let mut collector = Self {
            child,
            log: log.to_path_buf(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = collector.child.try_wait() {
                panic!(
                    "edgeflow collect exited with {status}:\n{}",
                    collector.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "collect did not listen:\n{}",
                collector.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        collector
    }

    /// The log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM; returns the exit success and the whole log.
    pub fn stop(mut self) -> (bool, String) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("exit");
        (exit.success(), self.log())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `flight_put.py` against `port`; returns (succeeded, JSON printed, stderr).
fn flight(
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    args: &[&str],
) -> (bool, Value, String) {
    let mut command = Command::new(python());
    command
        .arg(repo().join("tests/python/flight_put.py"))
        .arg(port.to_string())
        .arg("--ca")
        .arg(ca);
    if let Some((cert, key)) = identity {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command.args(args);
    let (output, stdout, stderr) = run(&mut command);
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("flight_put.py printed no JSON:\n{stdout}\n{stderr}"));
    (output.status.success(), json, stderr)
}

fn identity(certs: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        certs.join(format!("{name}.pem")),
        certs.join(format!("{name}-key.pem")),
    )
}

fn check_collected(out: &Path) -> Value {
    let stdout = crate::util::check_with_python("check_collected.py", &[out]);
    serde_json::from_str(stdout.trim()).expect("check_collected.py prints JSON")
}

#[test]
fn certs_refuses_to_overwrite_and_writes_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), "certs", &["gw-01", "gw-02"]);
    for name in ["ca", "collector", "gw-01", "gw-02"] {
        let (cert, key) = identity(&certs, name);
        assert!(
            fs::read_to_string(&cert)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} must be private", key.display());
    }
    let before = fs::read(certs.join("ca.pem")).unwrap();
    let mut again = edgeflow();
    again.args(["certs", "--out"]).arg(&certs);
    let (output, _, stderr) = run(&mut again);
    assert!(!output.status.success());
    assert_contains!(stderr, "refusing to overwrite");
    assert_eq!(
        fs::read(certs.join("ca.pem")).unwrap(),
        before,
        "nothing was overwritten"
    );
    let mut forced = edgeflow();
    forced.args(["certs", "--force", "--out"]).arg(&certs);
    assert!(run(&mut forced).0.status.success());
    assert_ne!(
        fs::read(certs.join("ca.pem")).unwrap(),
        before,
        "--force replaces the CA"
    );
    let mut bad = edgeflow();
    bad.args(["certs", "--gateway", "../evil", "--out"])
        .arg(dir.path().join("x"));
    let (output, _, stderr) = run(&mut bad);
    assert!(!output.status.success());
    assert_contains!(stderr, "gateway id '../evil'");
}

#[test]
fn segments_land_once_in_partitioned_parquet_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), "certs", &["gw-01", "gw-02"]);
    let out = dir.path().join("out");
    let collector = Collector::start(&certs, &out, free_port(), &dir.path().join("collect.log"));
    let ca = certs.join("ca.pem");
    let (gw1_cert, gw1_key) = identity(&certs, "gw-01");
    let (gw2_cert, gw2_key) = identity(&certs, "gw-02");
    let gw1 = Some((gw1_cert.as_path(), gw1_key.as_path()));
    let gw2 = Some((gw2_cert.as_path(), gw2_key.as_path()));
    let start = (MIDNIGHT - 50_000).to_string();
    let later = (MIDNIGHT + 3_600_000).to_string();

    // Two gateways at once; gw-01's first segment spans midnight (two date files).
    let port = collector.port;
    let (put1, put2, put3) = std::thread::scope(|s| {
        let a = s.spawn(|| flight(port, &ca, gw1, &["put", "plant.up", "1", "100", &start]));
        let b = s.spawn(|| flight(port, &ca, gw1, &["put", "plant.up", "2", "50", &later]));
        let c = s.spawn(|| flight(port, &ca, gw2, &["put", "plant.up", "1", "30", &start]));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    for (ok, ack, stderr) in [&put1, &put2, &put3] {
        assert!(ok, "put failed: {ack}\n{stderr}");
        assert_eq!(ack["duplicate"], false);
    }
    assert_eq!(put1.1["rows"], 100);
    assert_eq!(put1.1["segment_id"], 1);
    assert_eq!(put1.1["stream"], "plant.up");

    let check = check_collected(&out);
    assert_eq!(
        check["groups"],
        serde_json::json!([
            ["gw-01", "2025-11-25", "plant.up", 50],
            ["gw-01", "2025-11-26", "plant.up", 100],
            ["gw-02", "2025-11-25", "plant.up", 30],
        ]),
        "{check}"
    );
    assert_eq!(check["misplaced"], 0);
    assert_eq!(check["tmp_files"], 0);
    let file = out.join("gateway=gw-01/date=2025-11-25/plant.up-00000000000000000001.parquet");
    assert!(file.exists(), "deterministic file name");

    // The same segment again: acked as a duplicate, no rows added.
    let (ok, ack, stderr) = flight(port, &ca, gw1, &["put", "plant.up", "1", "100", &start]);
    assert!(ok, "{ack}\n{stderr}");
    assert_eq!(ack["duplicate"], true);
    assert_eq!(ack["rows"], 100);
    let again = check_collected(&out);
    assert_eq!(again["total"], 180);
    assert_eq!(again["distinct"], 180, "no duplicate rows: {again}");

    // ListFlights and DoGet read back what arrived.
    let (ok, list, stderr) = flight(port, &ca, gw1, &["list"]);
    assert!(ok, "{list}\n{stderr}");
    let summary: Vec<(String, String, u64, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["ticket"].as_str().unwrap().to_owned(),
                f["gateway"].as_str().unwrap().to_owned(),
                f["rows"].as_u64().unwrap(),
                f["total_records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("gw-01/plant.up".into(), "gw-01".into(), 150, 150),
            ("gw-02/plant.up".into(), "gw-02".into(), 30, 30),
        ]
    );
    assert_eq!(
        list[0]["schema"],
        serde_json::json!(["ts", "device", "value"])
    );
    let (ok, got, stderr) = flight(port, &ca, gw2, &["get", "gw-01/plant.up"]);
    assert!(ok, "{got}\n{stderr}");
    assert_eq!(got["rows"], 150);
    let mut expected: Vec<f64> = (0..100).chain(0..50).map(f64::from).collect();
    expected.sort_by(f64::total_cmp);
    assert_eq!(got["values"], serde_json::json!(expected));
    let (ok, missing, _) = flight(port, &ca, gw2, &["get", "gw-09/plant.up"]);
    assert!(!ok);
    assert_contains!(
        missing["error"].as_str().unwrap(),
        "nothing received for gw-09/plant.up"
    );

    let (clean, log) = collector.stop();
    assert!(clean, "collect exits 0 on SIGTERM:\n{log}");
    assert_contains!(
        log,
        "Segment stored gateway=gw-01 stream=plant.up segment=1 rows=100 duplicate=true"
    );
    assert_contains!(log, "Collector stopped segments=3 rows=180 duplicates=1");
    assert_contains!(log, "Collector summary segments=");
}

#[test]
fn bad_clients_are_refused_with_clear_errors_and_collect_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, ca_name) = make_certs_with_ca_name(dir.path(), "certs", &["gw-01"]);
    let other = make_certs(dir.path(), "other", &["gw-01"]);
    let out = dir.path().join("out");
    let mut collector =
        Collector::start(&certs, &out, free_port(), &dir.path().join("collect.log"));
    let ca = certs.join("ca.pem");
    let port = collector.port;

    // An expired certificate signed by the right CA: the CA's key and subject from
    // `edgeflow certs` rebuild its issuer.
    let ca_key = KeyPair::from_pem(&fs::read_to_string(certs.join("ca-key.pem")).unwrap()).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "edgeflow");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut expired = CertificateParams::default();
    expired
        .distinguished_name
        .push(DnType::CommonName, "gw-old");
    expired.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired_key = KeyPair::generate().unwrap();
    let expired_cert = expired.signed_by(&expired_key, &issuer).unwrap();
    fs::write(dir.path().join("old.pem"), expired_cert.pem()).unwrap();
    fs::write(dir.path().join("old-key.pem"), expired_key.serialize_pem()).unwrap();

    let put = [
        "--timeout",
        "3",
        "put",
        "plant.up",
        "7",
        "5",
        "1764115200000",
    ];
    // (case, client certificate and key, the collector's reason, the client's TLS alert)
    type Case<'a> = (&'a str, Option<(PathBuf, PathBuf)>, &'a str, &'a str);
    let cases: [Case<'_>; 3] = [
        (
            "no client certificate",
            None,
            "no client certificate",
            "certificate required",
        ),
        (
            "another CA",
            Some(identity(&other, "gw-01")),
            "certificate from an unknown CA",
            "unknown ca",
        ),
        (
            "expired certificate",
            Some((dir.path().join("old.pem"), dir.path().join("old-key.pem"))),
            "expired certificate",
            "certificate expired",
        ),
    ];
    for (case, id, server_reason, client_alert) in &cases {
        let identity = id.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let (ok, answer, stderr) = flight(port, &ca, identity, &put);
        assert!(!ok, "{case}: the put must fail, got {answer}");
        let error = answer["error"].as_str().unwrap().to_lowercase();
        assert!(error.contains("unavailable"), "{case}: {error}");
        // gRPC prints the TLS alert it received; it names the reason.
        assert!(
            stderr.to_lowercase().contains(client_alert),
            "{case}: client stderr should mention {client_alert:?}:\n{stderr}"
        );
        assert!(collector.running(), "{case}: collect must keep running");
        let log = collector.log();
        assert!(
            log.contains("Refused a TLS connection peer=127.0.0.1:")
                && log.contains(&format!("reason=\"{server_reason}\"")),
            "{case}: collect should log the refusal:\n{log}"
        );
    }

    // A bad descriptor gets InvalidArgument with the protocol's message.
    let gw = identity(&certs, "gw-01");
    let gw = Some((gw.0.as_path(), gw.1.as_path()));
    let (ok, answer, _) = flight(port, &ca, gw, &["put-raw", "edgeflow", "plant up", "1"]);
    assert!(!ok);
    let error = answer["error"].as_str().unwrap();
    assert_contains!(error, "invalid argument");
    assert_contains!(
        error,
        "stream name `plant up` may hold only letters, digits"
    );
    let (ok, answer, _) = flight(port, &ca, gw, &["put-raw", "other", "s", "1"]);
    assert!(!ok);
    assert_contains!(
        answer["error"].as_str().unwrap(),
        "is not edgeflow/<stream>/<segment id>"
    );

    // Still serving a good gateway.
    let (ok, ack, stderr) = flight(port, &ca, gw, &put);
    assert!(ok, "{ack}\n{stderr}");
    assert_eq!(ack["rows"], 5);
    assert!(
        !out.join("gateway=gw-old").exists(),
        "nothing stored for refused clients"
    );

    let (clean, log) = collector.stop();
    assert!(clean, "{log}");
    let stopped = log
        .lines()
        .find(|l| l.contains("Collector stopped"))
        .expect("summary line");
    assert_contains!(stopped, "segments=1 rows=5");
    assert_contains!(stopped, "rejected=bad descriptor=2");
    for (_, _, reason, _) in &cases {
        assert_contains!(stopped, format!("{reason}="));
    }
}
