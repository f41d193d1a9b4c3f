//! The `http` source through the real binary and a real HTTP client (reqwest on rustls):
//! every status code, token and certificate authentication (a PKI made here with rcgen),
//! body limits, overload answered with 503 while memory stays bounded, and the counters in
//! `/metrics` (parsed with `prometheus-parse`) checked against what was sent.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use crate::pki::Pki;
use crate::util::{edgeflow, write_query};

/// A free loopback port (bound and released; the pipeline binds it right after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").port()
}

/// An `edgeflow run` in the background, killed when dropped.
pub struct Pipeline {
    pub child: Child,
    /// The folder the pipeline runs in (removed with it).
    _dir: tempfile::TempDir,
}

impl Pipeline {
    /// Starts `edgeflow run` on `query` (written into a fresh folder), with stdout piped.
    pub fn start(query: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_query(dir.path(), "pipeline.toml", query);
        let child = edgeflow()
            .arg("run")
            .arg(&path)
            .arg("--no-status")
            .arg("--workers")
            .arg("2")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("edgeflow starts");
        Self { child, _dir: dir }
    }

    /// Waits until `url` answers (any status), failing with the process's stderr.
    pub fn wait_for(&mut self, client: &Client, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client.get(url).send().is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("edgeflow exited with {status}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{url} did not answer within 20s");
    }

    /// The resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// SIGTERM, then the exit status and the whole stdout and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("stdout");
        }
        let status = self.child.wait().expect("exit");
        (status, stdout, self.stderr())
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain-HTTP client (rustls on ring installed for any TLS use).
pub fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Parses a Prometheus text exposition.
pub fn scrape(client: &Client, url: &str) -> prometheus_parse::Scrape {
    let text = client
        .get(url)
        .send()
        .expect("metrics answer")
        .text()
        .expect("text");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid text format")
}

/// The value of `metric` with all of `labels`, if present.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

fn reading(device: &str, value: f64, ts: i64) -> String {
    format!(r#"{{"device_id": "{device}", "value": {value}, "timestamp": {ts}}}"#)
}

const T0: i64 = 1_732_550_000_000;

#[test]
fn every_status_code_and_the_counters_match_what_was_sent() {
    let (http, ops) = (free_port(), free_port());
    let query = format!(
        r#"
[server]
listen = "127.0.0.1:{ops}"

[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
body_limit = 2048
tokens = {{ "device-1" = "token-1", "device-2" = "token-2" }}

[sinks.out]
type = "stdout"
inputs = ["readings"]
"#
    );
    let mut pipeline = Pipeline::start(&query);
    let client = client();
    let url = format!("http://127.0.0.1:{http}/ingest");
    pipeline.wait_for(&client, &format!("http://127.0.0.1:{ops}/health"));
    pipeline.wait_for(&client, &url);
    let post = |token: Option<&str>, content_type: &str, body: String| {
        let mut request = client
            .post(&url)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        json(request.send().expect("answer"))
    };

    // 200: one object, an array, JSON lines (a record without device_id gets the caller's).
    let (status, body) = post(
        Some("token-1"),
        "application/json",
        reading("device-1", 1.5, T0),
    );
    assert_eq!(
        (status, &body["accepted"]),
        (200, &Value::from(1)),
        "{body}"
    );
    let array = format!(
        "[{}, {}]",
        reading("device-1", 2.0, T0 + 1),
        reading("device-1", 3.0, T0 + 2)
    );
    assert_eq!(
        post(Some("token-1"), "application/json", array).1["accepted"],
        2
    );
    let lines = format!(
        "{}\n{{\"value\": 4.0, \"timestamp\": {}}}\n{}\n",
        reading("device-2", 5.0, T0 + 3),
        T0 + 4,
        reading("device-2", 6.0, T0 + 5)
    );
    let (status, body) = post(Some("token-2"), "application/x-ndjson", lines);
    assert_eq!(
        (status, &body["accepted"]),
        (200, &Value::from(3)),
        "{body}"
    );
    let accepted = 6;

    // 400: invalid JSON; JSON lines with two bad lines, each reported, nothing kept.
    let (status, body) = post(Some("token-1"), "application/json", "{\"value\": ".into());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    let mixed = format!(
        "{}\n{{\"device_id\": \"device-1\", \"value\": \"hot\", \"timestamp\": {T0}}}\n{}\n{{\"device_id\": \"device-1\", \"value\": 1}}\n",
        reading("device-1", 7.0, T0),
        reading("device-1", 8.0, T0)
    );
    let (status, body) = post(Some("token-1"), "application/x-ndjson", mixed);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["accepted"], 0);
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(errors[0]["record"], 2);
    assert_eq!(
        errors[0]["message"],
        "line 2: field 'value' (float64) cannot hold \"hot\""
    );
    assert_eq!(errors[1]["record"], 4);
    assert_eq!(errors[1]["reason"], "missing_event_time");

    // 401: no token, an unknown token.
    let (status, body) = post(None, "application/json", reading("device-1", 1.0, T0));
    assert_eq!(status, 401, "{body}");
    let response = client
        .post(&url)
        .header(AUTHORIZATION, "Bearer nope")
        .header(CONTENT_TYPE, "application/json")
        .body(reading("device-1", 1.0, T0))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("www-authenticate").is_some());

    // 403: device-1's token writing device-2's reading.
    let cross = format!(
        "[{}, {}]",
        reading("device-1", 1.0, T0),
        reading("device-2", 1.0, T0)
    );
    let (status, body) = post(Some("token-1"), "application/json", cross);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["record"], 2);

    // 404, 405.
    let missing = client
        .post(format!("http://127.0.0.1:{http}/other"))
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(client.get(&url).send().unwrap().status().as_u16(), 405);

    // 413: over body_limit, with a Content-Length and chunked (no length given).
    let big = format!("[{}]", vec![reading("device-1", 1.0, T0); 40].join(","));
    assert!(big.len() > 2048);
    let (status, body) = post(Some("token-1"), "application/json", big.clone());
    assert_eq!(status, 413, "{body}");
    let chunked = client
        .post(&url)
        .header(AUTHORIZATION, "Bearer token-1")
        .header(CONTENT_TYPE, "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            big.into_bytes(),
        )))
        .send()
        .unwrap();
    assert_eq!(chunked.status().as_u16(), 413);

    // 415.
    let (status, body) = post(Some("token-1"), "text/plain", "21.5".into());
    assert_eq!(status, 415, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("application/x-ndjson")
    );

    // The counters say the same, per reason.
    let metrics = scrape(&client, &format!("http://127.0.0.1:{ops}/metrics"));
    let node = [("node", "readings")];
    let dropped = |reason: &str| {
        sample(
            &metrics,
            "edgeflow_dropped_rows_total",
            &[("node", "readings"), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        sample(&metrics, "edgeflow_rows_out_total", &node),
        Some(accepted as f64)
    );
    assert_eq!(dropped("unauthenticated"), 2.0);
    assert_eq!(dropped("wrong_device"), 1.0);
    assert_eq!(dropped("wrong_type"), 1.0);
    assert_eq!(dropped("missing_event_time"), 1.0);
    assert_eq!(dropped("malformed_json"), 1.0);
    // The two valid lines of the mixed body and device-1's own reading of the cross write.
    assert_eq!(dropped("rejected_with_request"), 3.0);
    assert_eq!(dropped("body_too_large"), 2.0);
    assert_eq!(dropped("unsupported_media_type"), 1.0);
    assert_eq!(sample(&metrics, "edgeflow_listening", &node), Some(1.0));

    // Everything accepted reached the sink, and nothing else.
    let (status, stdout, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), accepted, "{stdout}");
    let mut values: Vec<f64> = rows.iter().map(|r| r["value"].as_f64().unwrap()).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [1.5, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(
        rows.iter()
            .any(|r| r["value"] == 4.0 && r["device_id"] == "device-2")
    );
}

/// An HTTPS client trusting `ca`, with a client certificate when given.
fn tls_client(ca: &Path, identity: Option<(&str, &str)>) -> Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("TLS client")
}

#[test]
fn mutual_tls_takes_the_device_id_from_the_certificate_subject() {
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new(certs.path(), "devices CA");
    let stranger_ca = Pki::new(certs.path(), "stranger CA");
    let (server_cert, server_key, _, _) = pki.leaf("gateway", &["127.0.0.1", "localhost"]);
    let (_, _, device_cert, device_key) = pki.leaf("device-1", &[]);
    let (_, _, stranger_cert, stranger_key) = stranger_ca.leaf("device-1", &[]);
    let http = free_port();
    let query = format!(
        r#"
[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
tls = {{ cert = "{}", key = "{}", client_ca = "{}" }}

[sinks.out]
type = "stdout"
inputs = ["readings"]
"#,
        server_cert.display(),
        server_key.display(),
        pki.ca.display()
    );
    let mut pipeline = Pipeline::start(&query);
    let url = format!("https://127.0.0.1:{http}/ingest");
    let device = tls_client(&pki.ca, Some((&device_cert, &device_key)));
    pipeline.wait_for(&device, &url);

    let post = |client: &Client, body: String| {
        client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    let (status, body) = json(post(&device, reading("device-1", 1.0, T0)).unwrap());
    assert_eq!(status, 200, "{body}");
    let (status, body) = json(
        post(
            &device,
            r#"{"value": 2.0, "timestamp": 1732550000001}"#.into(),
        )
        .unwrap(),
    );
    assert_eq!(
        status, 200,
        "a record without a device id gets the certificate's: {body}"
    );
    let (status, body) = json(post(&device, reading("device-2", 3.0, T0)).unwrap());
    assert_eq!(status, 403, "{body}");

    // No certificate, or one from another CA: the handshake fails, nothing is written.
    let anonymous = tls_client(&pki.ca, None);
    assert!(post(&anonymous, reading("device-1", 9.0, T0)).is_err());
    let stranger = tls_client(&pki.ca, Some((&stranger_cert, &stranger_key)));
    assert!(post(&stranger, reading("device-1", 9.0, T0)).is_err());

    let (status, stdout, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows.iter().all(|r| r["device_id"] == "device-1"));
}

#[test]
fn tokens_from_a_file_over_server_tls() {
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new(certs.path(), "gateway CA");
    let (server_cert, server_key, _, _) = pki.leaf("gateway", &["127.0.0.1"]);
    let tokens = certs.path().join("tokens");
    std::fs::write(
        &tokens,
        "# token device\nsecret-a sensor-a\nsecret-b sensor-b\n",
    )
    .unwrap();
    let http = free_port();
    let query = format!(
        r#"
[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
tokens = "{}"
tls = {{ cert = "{}", key = "{}" }}

[sinks.out]
type = "stdout"
inputs = ["readings"]
"#,
        tokens.display(),
        server_cert.display(),
        server_key.display(),
    );
    let mut pipeline = Pipeline::start(&query);
    let url = format!("https://127.0.0.1:{http}/ingest");
    let client = tls_client(&pki.ca, None);
    pipeline.wait_for(&client, &url);
    let send = |token: &str, device: &str| {
        client
            .post(&url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(reading(device, 1.0, T0))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send("secret-b", "sensor-b"), 200);
    assert_eq!(send("secret-b", "sensor-a"), 403);
    assert_eq!(send("secret-c", "sensor-a"), 401);
    let (status, stdout, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn overload_is_answered_503_with_retry_after_and_memory_stays_bounded() {
    let (http, ops) = (free_port(), free_port());
    // The sink writes to a pipe nobody reads: once the pipe buffer is full the sink blocks,
    // the dataflow stops taking rows, and the source must refuse instead of buffering.
    let query = format!(
        r#"
[server]
listen = "127.0.0.1:{ops}"

[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
allow_anonymous = true
send_timeout = "100ms"
max_pending_rows = 20000

[sinks.out]
type = "stdout"
inputs = ["readings"]
"#
    );
    let mut pipeline = Pipeline::start(&query);
    let client = client();
    let url = format!("http://127.0.0.1:{http}/ingest");
    pipeline.wait_for(&client, &url);
    let body: String = (0..500)
        .map(|i| reading(&format!("d{}", i % 10), i as f64, T0 + i) + "\n")
        .collect();
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let retry_after_ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut rss = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let (accepted, refused, retry_after_ok) =
                (accepted.clone(), refused.clone(), retry_after_ok.clone());
            scope.spawn(move || {
                // Bounded in count and time.
                for _ in 0..2_000 {
                    if started.elapsed() > Duration::from_secs(8) {
                        break;
                    }
                    let response = client
                        .post(&url)
                        .header(CONTENT_TYPE, "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .expect("answer");
                    match response.status().as_u16() {
                        200 => {
                            accepted.fetch_add(500, Ordering::Relaxed);
                        }
                        503 => {
                            refused.fetch_add(500, Ordering::Relaxed);
                            if response
                                .headers()
                                .get(RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                == Some("1")
                            {
                                retry_after_ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => panic!("unexpected status {other}: {:?}", response.text()),
                    }
                }
            });
        }
        while started.elapsed() < Duration::from_secs(8) {
            std::thread::sleep(Duration::from_millis(500));
            rss.push(pipeline.rss_bytes());
        }
    });
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    eprintln!("overload: {accepted} records accepted, {refused} refused; RSS samples {rss:?}");
    assert!(
        refused > 0,
        "no request was refused ({accepted} records accepted)"
    );
    assert_eq!(
        retry_after_ok.load(Ordering::Relaxed) * 500,
        refused,
        "every 503 has Retry-After: 1"
    );
    // Memory: after the first second, the process does not keep growing with the refused
    // load (channels and max_pending_rows bound it).
    let peak = *rss.iter().max().unwrap();
    let settled = rss[2];
    assert!(
        peak < 400 * 1024 * 1024,
        "RSS peaked at {peak} bytes: {rss:?}"
    );
    assert!(
        peak < settled + 100 * 1024 * 1024,
        "RSS kept growing under overload: {rss:?}"
    );
    // The counters agree with the clients.
    let metrics = scrape(&client, &format!("http://127.0.0.1:{ops}/metrics"));
    let node = [("node", "readings")];
    assert_eq!(
        sample(&metrics, "edgeflow_rows_out_total", &node),
        Some(accepted as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "edgeflow_dropped_rows_total",
            &[("node", "readings"), ("reason", "overloaded")]
        ),
        Some(refused as f64)
    );
    let depth = sample(&metrics, "edgeflow_queue_depth", &[("node", "readings")]).unwrap();
    assert!(
        depth >= 1.0,
        "a stalled pipeline shows a full queue: {depth}"
    );
    // Now read the pipe: everything accepted arrives, exactly.
    let stdout = pipeline.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().count() as u64);
    std::thread::sleep(Duration::from_millis(500));
    let (status, _, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(reader.join().unwrap(), accepted);
}

#[test]
fn keep_valid_keeps_the_valid_records_and_lists_the_others() {
    let http = free_port();
    let query = format!(
        r#"
[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
allow_anonymous = true
invalid_records = "keep_valid"

[sinks.out]
type = "stdout"
inputs = ["readings"]
"#
    );
    let mut pipeline = Pipeline::start(&query);
    let client = client();
    let url = format!("http://127.0.0.1:{http}/ingest");
    pipeline.wait_for(&client, &url);
    let body = format!(
        "{}\n{{\"device_id\": \"a\", \"value\": [1], \"timestamp\": {T0}}}\n{}\n",
        reading("a", 1.0, T0),
        reading("b", 2.0, T0)
    );
    let (status, answer) = json(
        client
            .post(&url)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], 1);
    assert_eq!(
        answer["errors"][0]["message"],
        "line 2: field 'value' (float64) cannot hold an array"
    );
    // A body with no valid record is still a 400.
    let (status, _) = json(
        client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body("[{\"value\": 1}]")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400);
    let (status, stdout, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}
