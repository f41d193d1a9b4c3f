//! TLS and mutual TLS against mosquitto, a wrong CA, and reconnect backoff against a dead broker.

use super::*;

fn tls_source(broker: &Broker, tls: &str) -> String {
    format!(
        "url = \"{}\"\nclient_id = \"tls-test\"\ntls = {tls}\n{READING_SOURCE}",
        broker.url()
    )
}

fn publish_tls(broker: &Broker, with_cert: bool, payload: &str) {
    let certs = broker.certs.as_ref().expect("TLS broker");
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", "localhost", "-p", &broker.port.to_string(), "-q", "1"])
        .args(["-t", "sensors/d1", "-m", payload])
        .arg("--cafile")
        .arg(&certs.ca);
    if with_cert {
        command
            .arg("--cert")
            .arg(&certs.client_cert)
            .arg("--key")
            .arg(&certs.client_key);
    }
    let status = command.status().expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub over TLS failed");
}

#[test]
fn tls_with_the_right_ca_receives_messages() {
    let broker = Broker::start(Security::Tls);
    let certs = broker.certs.as_ref().expect("certs");
    let pipeline = Running::start(&tls_source(
        &broker,
        &format!("{{ ca = \"{}\" }}", certs.ca.display()),
    ));
    pipeline.wait_connected();
    publish_tls(
        &broker,
        false,
        r#"{"device_id": "d1", "ts": 1000, "value": 1.5}"#,
    );
    wait_for("one row over TLS", Duration::from_secs(10), || {
        pipeline.main_rows() == 1
    });
}

#[test]
fn mutual_tls_accepts_a_client_certificate_and_rejects_a_client_without_one() {
    let broker = Broker::start(Security::MutualTls);
    let certs = broker.certs.as_ref().expect("certs");
    let with_cert = Running::start(&tls_source(
        &broker,
        &format!(
            "{{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
            certs.ca.display(),
            certs.client_cert.display(),
            certs.client_key.display()
        ),
    ));
    with_cert.wait_connected();
    publish_tls(
        &broker,
        true,
        r#"{"device_id": "d1", "ts": 1000, "value": 1.5}"#,
    );
    wait_for("one row over mutual TLS", Duration::from_secs(10), || {
        with_cert.main_rows() == 1
    });
    // The sink over mutual TLS too.
    let sink_tls = format!(
        "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let published = publish_with_sink_options(&broker.url(), &sink_tls, readings(10, 2), 5)
        .join()
        .expect("publisher");
    assert_eq!(published, 10);
    wait_for(
        "the sink's rows over mutual TLS",
        Duration::from_secs(10),
        || with_cert.main_rows() == 11,
    );
    with_cert.stop().expect("stops");

    let without = Running::start(&tls_source(
        &broker,
        &format!("{{ ca = \"{}\" }}", certs.ca.display()),
    ));
    let error = without
        .wait_end(Duration::from_secs(20))
        .expect_err("a client without a certificate is refused");
    let message = format!(
        "{error:#}: {}",
        std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(message.contains("certificate"), "{message}");
}

#[test]
fn a_wrong_ca_fails_with_a_clear_error() {
    let broker = Broker::start(Security::Tls);
    let certs = broker.certs.as_ref().expect("certs");
    let pipeline = Running::start(&tls_source(
        &broker,
        &format!("{{ ca = \"{}\" }}", certs.other_ca.display()),
    ));
    let error = pipeline
        .wait_end(Duration::from_secs(20))
        .expect_err("an unknown issuer stops the source");
    let message = format!(
        "{error}: {}",
        std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        message.contains("not signed by the configured CA"),
        "the error says what is wrong: {message}"
    );
    assert!(
        message.contains(&format!("localhost:{}", broker.port)),
        "and names the broker: {message}"
    );
}

/// A TCP front for the broker that either refuses (accepts and closes at once, like a broker
/// that is down) or forwards, recording when each connection attempt came.
struct Gate {
    port: u16,
    forward: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Instant>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    fn new(broker_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let gate = Self {
            port,
            forward: Arc::new(AtomicBool::new(false)),
            attempts: Arc::new(Mutex::new(Vec::new())),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (forward, attempts, open) = (
            gate.forward.clone(),
            gate.attempts.clone(),
            gate.open.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                attempts.lock().expect("lock").push(Instant::now());
                if !forward.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    continue;
                };
                open.lock()
                    .expect("lock")
                    .push(client.try_clone().expect("clone"));
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        upstream.try_clone().expect("clone"),
                    ),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        gate
    }

    fn cut(&self) {
        self.forward.store(false, Ordering::SeqCst);
        for stream in self.open.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().expect("lock").clone()
    }
}

#[test]
fn reconnect_backoff_grows_against_a_dead_broker_and_resets_after_a_connection() {
    let broker = Broker::start(Security::Plain);
    let gate = Gate::new(broker.port);
    let pipeline = Running::start(&format!(
        r#"
url = "mqtt://127.0.0.1:{port}"
client_id = "backoff"
topics = ["sensors/+"]
reconnect_min = "100ms"
reconnect_max = "2s"
schema = {{ device_id = "string", ts = "timestamp_ms", value = "float64" }}
"#,
        port = gate.port
    ));
    std::thread::sleep(Duration::from_secs(5));
    let attempts = gate.attempts();
    // Steps of 100, 200, 400, 800, 1600 ms, then 2 s, each with up to half taken off by
    // jitter: 5 to 8 attempts in 5 s. A storm would be thousands.
    assert!(
        (4..=10).contains(&attempts.len()),
        "{} attempts in 5 s against a dead broker",
        attempts.len()
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[gaps.len() - 1] > gaps[0] * 3,
        "the delay grows: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_millis(2300)),
        "capped at 2 s: {gaps:?}"
    );
    assert!(pipeline.value("connect_failures") >= 4);

    gate.forward.store(true, Ordering::SeqCst);
    wait_for(
        "a connection through the gate",
        Duration::from_secs(5),
        || pipeline.value("connected") == 1,
    );
    std::thread::sleep(Duration::from_millis(300));
    let before_cut = gate.attempts().len();
    let cut_at = Instant::now();
    gate.cut();
    wait_for("a reconnect attempt", Duration::from_secs(5), || {
        gate.attempts().len() > before_cut
    });
    let first_retry = gate.attempts()[before_cut] - cut_at;
    assert!(
        first_retry < Duration::from_millis(700),
        "after a good connection the backoff starts over at 100 ms (without the reset it would be 800 ms or more), but the first retry came after {first_retry:?}"
    );
    assert_eq!(pipeline.value("connected"), 0);
}
