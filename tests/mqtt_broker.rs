//! A real mosquitto broker for the MQTT tests, on a free loopback port, plain or TLS (with or
//! without required client certificates), with certificates generated here by `rcgen`.
//!
//! `scripts/test` installs mosquitto (`apt-get install mosquitto mosquitto-clients`). The
//! broker keeps its persistence file in its own temporary folder, so [`Broker::stop`] (a
//! SIGTERM, which makes mosquitto save its sessions) and [`Broker::start_again`] on the same
//! port bring back the persistent sessions, like a broker restart on a gateway.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// How the broker listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP.
    Plain,
    /// TLS; clients need not present a certificate.
    Tls,
    /// TLS; clients must present a certificate signed by the test CA.
    MutualTls,
}

/// PEM files of a test PKI: a CA, the broker's certificate (for `localhost` and
/// `127.0.0.1`), a client certificate, and a second, unrelated CA.
pub struct Certificates {
    /// The CA that signed the broker and client certificates.
    pub ca: PathBuf,
    /// The broker's certificate and key.
    pub server_cert: PathBuf,
    /// The broker's key.
    pub server_key: PathBuf,
    /// A client certificate signed by `ca`.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here (for "wrong CA" tests).
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

impl Certificates {
    /// Generates a fresh PKI into `dir`.
    pub fn generate(dir: &Path) -> Self {
        let authority = ca("edgeflow test CA");
        let other = ca("some other CA");
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        let leaf = |cn: &str, names: Vec<String>| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &authority).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key) = leaf(
            "localhost",
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
        );
        let (client_pem, client_key) = leaf("edgeflow gateway", Vec::new());
        Self {
            ca: write("ca.pem", authority.pem()),
            server_cert: write("server.pem", server_pem),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client_pem),
            client_key: write("client.key", client_key),
            other_ca: write("other-ca.pem", other.pem()),
        }
    }
}

/// A running (or stopped) mosquitto.
pub struct Broker {
    /// Its folder: config, persistence, log, certificates.
    pub dir: tempfile::TempDir,
    /// The loopback port it listens on.
    pub port: u16,
    /// How it listens.
    pub security: Security,
    /// The test PKI (TLS brokers only).
    pub certs: Option<Certificates>,
    child: Option<Child>,
}

/// The mosquitto binary, or a panic saying how to get it.
pub fn mosquitto_binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "mosquitto is not installed: run scripts/test (it installs mosquitto) or apt-get install mosquitto mosquitto-clients"
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Broker {
    /// Starts a broker of the given kind on a free port.
    pub fn start(security: Security) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // Run as root, mosquitto switches to the `mosquitto` user, which must be able to write
        // its persistence file and log here and read the certificates.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("open up the broker folder");
        let certs = (security != Security::Plain).then(|| Certificates::generate(dir.path()));
        let mut broker = Self {
            dir,
            port: free_port(),
            security,
            certs,
            child: None,
        };
        broker.write_config();
        broker.start_again();
        broker
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let mut config = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 0\n\
             max_inflight_messages 100\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            port = self.port,
            dir = dir.display()
        );
        if let Some(certs) = &self.certs {
            config.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                certs.ca.display(),
                certs.server_cert.display(),
                certs.server_key.display()
            ));
            if self.security == Security::MutualTls {
                config.push_str("require_certificate true\n");
            }
        }
        let mut file = std::fs::File::create(dir.join("mosquitto.conf")).expect("config file");
        file.write_all(config.as_bytes()).expect("write config");
    }

    /// Starts mosquitto (again) with the same port, config and persistence folder, and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "mosquitto exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops mosquitto with SIGTERM (it saves its sessions) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `mqtt://127.0.0.1:port` or `mqtts://localhost:port`.
    pub fn url(&self) -> String {
        match self.security {
            Security::Plain => format!("mqtt://127.0.0.1:{}", self.port),
            Security::Tls | Security::MutualTls => format!("mqtts://localhost:{}", self.port),
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// `mosquitto_pub` against this (plain) broker: publishes each of `messages` to its topic.
    pub fn publish(&self, qos: u8, messages: &[(&str, &[u8])]) {
        self.publish_with(&[], qos, messages);
    }

    /// [`Self::publish`] with the retain flag: the broker keeps each as its topic's last
    /// message for later subscribers.
    pub fn publish_retained(&self, qos: u8, messages: &[(&str, &[u8])]) {
        self.publish_with(&["-r"], qos, messages);
    }

    fn publish_with(&self, flags: &[&str], qos: u8, messages: &[(&str, &[u8])]) {
        for (topic, payload) in messages {
            let mut child = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(flags)
                .args(["-q", &qos.to_string(), "-t", topic, "-s"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("mosquitto_pub (from mosquitto-clients) runs");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(payload)
                .expect("write payload");
            let status = child.wait().expect("mosquitto_pub ends");
            assert!(status.success(), "mosquitto_pub failed for topic {topic}");
        }
    }

    /// `mosquitto_pub -l`: one message per line of `lines`, all to `topic`, over one
    /// connection (fast).
    pub fn publish_lines(&self, qos: u8, topic: &str, lines: &str) {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", &qos.to_string(), "-t", topic, "-l"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub (from mosquitto-clients) runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(lines.as_bytes())
            .expect("write lines");
        let status = child.wait().expect("mosquitto_pub ends");
        assert!(status.success(), "mosquitto_pub -l failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
