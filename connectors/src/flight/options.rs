//! The options of the `flight` sink and their checks.
//!
//! [`FlightSinkConfig`] is what a query file says; [`FlightSinkConfig::plan`] checks every
//! option (endpoint URL, TLS files, sizes, times, the stream name) and returns the
//! [`FlightSettings`] the running sink uses. The checks read nothing but file metadata (does
//! the certificate file exist?), so `validate` finds a missing file; the PEM contents are
//! parsed when the pipeline is built.

use std::path::PathBuf;
use std::time::Duration;

use edgeflow_engine::OptionError;
use edgeflow_engine::config::duration;
use serde::Deserialize;

use super::protocol::check_stream_name;
use crate::http::options::ByteLimit;

/// Arrow IPC body compression of the spooled and sent batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Zstandard: the smallest segments, the least uplink traffic.
    #[default]
    Zstd,
    /// LZ4 frame: faster, larger.
    Lz4,
    /// No compression.
    None,
}

impl Compression {
    /// The Arrow IPC compression type (`None` for no compression).
    pub fn ipc(self) -> Option<arrow::ipc::CompressionType> {
        match self {
            Self::Zstd => Some(arrow::ipc::CompressionType::ZSTD),
            Self::Lz4 => Some(arrow::ipc::CompressionType::LZ4_FRAME),
            Self::None => None,
        }
    }
}

/// What to do when a new segment would take the spool past `max_spool_size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Delete the oldest unsent segments to make room, counting their rows as dropped: the
    /// newest data wins, the pipeline never slows down.
    #[default]
    DropOldest,
    /// Stop taking rows until the link frees space: nothing is lost, and the pipeline slows
    /// down (back-pressure through the sink's input channel) while the link is down.
    Block,
}

const fn default_batch_rows() -> usize {
    10_000
}

const fn default_batch_bytes() -> ByteLimit {
    ByteLimit(4 * 1024 * 1024)
}

const fn default_batch_interval() -> Duration {
    Duration::from_secs(5)
}

const fn default_max_spool_size() -> ByteLimit {
    ByteLimit(1_000_000_000)
}

const fn default_retry_initial() -> Duration {
    Duration::from_millis(500)
}

const fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}

const fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

const fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

const fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Options of the `flight` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightSinkConfig {
    /// The collector: `https://host:port` (TLS; mutual with `cert` and `key`) or
    /// `http://host:port` (plain gRPC, for testing only).
    pub endpoint: String,
    /// The CA certificate(s) that signed the collector's certificate (PEM). Default: the
    /// system's roots in `/etc/ssl/certs/ca-certificates.crt`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This gateway's certificate chain (PEM) for mutual TLS. Needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name the collector's certificate must carry, when it differs from the endpoint's
    /// host (for example when connecting by IP address). Default: the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The stream name in every segment's descriptor (letters, digits, `.`, `_`, `-`).
    /// Default: `<pipeline name>.<sink name>`, with any other character replaced by `_`.
    #[serde(default)]
    pub stream: Option<String>,
    /// The local spool folder (created if missing). Every batch-group is written here as a
    /// segment before it is sent and stays until the collector acknowledged it.
    pub spool: PathBuf,
    /// A segment is cut once it holds this many rows. Default 10000.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// A segment is cut once its rows take this many bytes in memory (a number or text like
    /// `"4MiB"`). Default 4 MiB.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: ByteLimit,
    /// A segment is cut once its first row has waited this long. Default `"5s"`.
    #[serde(default = "default_batch_interval", deserialize_with = "duration")]
    pub batch_interval: Duration,
    /// `"zstd"`, `"lz4"` or `"none"`: Arrow IPC compression of spooled and sent batches.
    /// Default `"zstd"`.
    #[serde(default)]
    pub compression: Compression,
    /// The most bytes the spool may hold (`"1GB"`, `"512MiB"` or a number). Default 1 GB.
    #[serde(default = "default_max_spool_size")]
    pub max_spool_size: ByteLimit,
    /// `"drop_oldest"` or `"block"`: what happens when the spool is full. Default
    /// `"drop_oldest"`.
    #[serde(default)]
    pub full_policy: FullPolicy,
    /// First delay before retrying a failed connection or send; doubles (with jitter) after
    /// each failure up to `retry_max`, and starts over after a success. Default `"500ms"`.
    #[serde(default = "default_retry_initial", deserialize_with = "duration")]
    pub retry_initial: Duration,
    /// Longest delay between retries. Default `"30s"`.
    #[serde(default = "default_retry_max", deserialize_with = "duration")]
    pub retry_max: Duration,
    /// At the end of the input, how long to keep sending what is spooled before exiting;
    /// the rest stays in the spool for the next run. Default `"10s"`.
    #[serde(default = "default_drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// Longest wait for a TCP and TLS connection to the collector. Default `"10s"`.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Longest wait for one segment's upload and acknowledgement. Default `"60s"`.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
}

/// A checked `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as written (trailing `/` removed).
    pub url: String,
    /// The host (without brackets for IPv6).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `https://`.
    pub tls: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Parses `http(s)://host[:port]`.
///
/// # Errors
/// A message quoting the URL.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "endpoint '{text}' must start with https:// (or http:// for testing), like \"https://collector:50051\""
        ));
    };
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!(
            "endpoint '{text}' must be scheme://host:port, without a path, query or user"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "endpoint '{text}' has an unclosed '[' around its host"
            ));
        };
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("endpoint '{text}' has text after its host")),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("endpoint '{text}' has no host"));
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("endpoint '{text}' has an invalid port '{port}'"))?,
        None => default_port,
    };
    Ok(Endpoint {
        url: trimmed.to_string(),
        host,
        port,
        tls,
    })
}

/// TLS file paths, checked to exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle (PEM); `None`: the system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name to verify on the collector's certificate.
    pub server_name: String,
}

/// The checked options the running sink uses.
#[derive(Clone, Debug)]
pub struct FlightSettings {
    /// The collector.
    pub endpoint: Endpoint,
    /// TLS files when the endpoint is `https://`.
    pub tls: Option<TlsFiles>,
    /// The stream option as written (the default is made at run time from the names).
    pub stream: Option<String>,
    /// The spool folder.
    pub spool: PathBuf,
    /// Row threshold of a segment.
    pub batch_rows: usize,
    /// Byte threshold of a segment (in-memory size of its batches).
    pub batch_bytes: u64,
    /// Time threshold of a segment.
    pub batch_interval: Duration,
    /// IPC compression.
    pub compression: Compression,
    /// Spool capacity in bytes.
    pub max_spool_size: u64,
    /// Full policy.
    pub full_policy: FullPolicy,
    /// Backoff bounds.
    pub retry: (Duration, Duration),
    /// End-of-input drain time.
    pub drain_timeout: Duration,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Per-segment upload timeout.
    pub request_timeout: Duration,
}

impl FlightSinkConfig {
    /// Checks every option; the settings on success.
    ///
    /// # Errors
    /// Every problem, each with its option path.
    pub fn plan(&self) -> Result<FlightSettings, Vec<OptionError>> {
        let mut errors = Vec::new();
        let endpoint = match parse_endpoint(&self.endpoint) {
            Ok(endpoint) => Some(endpoint),
            Err(message) => {
                errors.push(OptionError::at("endpoint", message));
                None
            }
        };
        for (name, path) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if let Some(path) = path
                && !path.is_file()
            {
                let reason = match std::fs::metadata(path) {
                    Ok(_) => "is not a file".to_string(),
                    Err(error) => crate::error::io_reason(&error),
                };
                errors.push(OptionError::at(
                    name,
                    format!("cannot use '{}': {reason}", path.display()),
                ));
            }
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => errors.push(OptionError::at(
                "key",
                "`cert` is set but `key` is not; mutual TLS needs both",
            )),
            (None, Some(_)) => errors.push(OptionError::at(
                "cert",
                "`key` is set but `cert` is not; mutual TLS needs both",
            )),
            _ => {}
        }
        let tls_options = self.ca.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.server_name.is_some();
        if let Some(endpoint) = &endpoint
            && !endpoint.tls
            && tls_options
        {
            errors.push(
                OptionError::at(
                    "endpoint",
                    format!(
                        "'{}' is plain http:// but ca, cert, key or server_name is set",
                        endpoint.url
                    ),
                )
                .with_hint("use https:// for TLS"),
            );
        }
        if let Some(name) = &self.server_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            errors.push(OptionError::at(
                "server_name",
                format!("'{name}' is not a valid DNS name or IP address"),
            ));
        }
        if let Some(stream) = &self.stream
            && let Err(error) = check_stream_name(stream)
        {
            errors.push(OptionError::at("stream", error.to_string()));
        }
        if self.spool.as_os_str().is_empty() {
            errors.push(OptionError::at("spool", "the spool folder path is empty"));
        }
        if self.batch_rows == 0 {
            errors.push(OptionError::at(
                "batch_rows",
                "batch_rows must be at least 1",
            ));
        }
        if self.batch_bytes.0 == 0 {
            errors.push(OptionError::at(
                "batch_bytes",
                "batch_bytes must be at least 1",
            ));
        }
        if self.batch_interval.is_zero() {
            errors.push(OptionError::at(
                "batch_interval",
                "batch_interval must be longer than 0s",
            ));
        }
        if self.max_spool_size.0 < self.batch_bytes.0 {
            errors.push(
                OptionError::at(
                    "max_spool_size",
                    format!(
                        "max_spool_size ({}) is smaller than batch_bytes ({}); the spool must hold at least one segment",
                        self.max_spool_size.0, self.batch_bytes.0
                    ),
                )
                .with_hint("raise max_spool_size or lower batch_bytes"),
            );
        }
        for (name, value) in [
            ("retry_initial", self.retry_initial),
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                errors.push(OptionError::at(
                    name,
                    format!("{name} must be longer than 0s"),
                ));
            }
        }
        if self.retry_max < self.retry_initial {
            errors.push(OptionError::at(
                "retry_max",
                format!(
                    "retry_max ({:?}) is shorter than retry_initial ({:?})",
                    self.retry_max, self.retry_initial
                ),
            ));
        }
        let Some(endpoint) = endpoint else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let tls = endpoint.tls.then(|| TlsFiles {
            ca: self.ca.clone(),
            identity: self.cert.clone().zip(self.key.clone()),
            server_name: self
                .server_name
                .clone()
                .unwrap_or_else(|| endpoint.host.clone()),
        });
        Ok(FlightSettings {
            endpoint,
            tls,
            stream: self.stream.clone(),
            spool: self.spool.clone(),
            batch_rows: self.batch_rows,
            batch_bytes: self.batch_bytes.0,
            batch_interval: self.batch_interval,
            compression: self.compression,
            max_spool_size: self.max_spool_size.0,
            full_policy: self.full_policy,
            retry: (self.retry_initial, self.retry_max),
            drain_timeout: self.drain_timeout,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        })
    }
}

/// The default stream name, `<pipeline>.<sink>`, with every character outside
/// `[A-Za-z0-9._-]` replaced by `_`.
pub fn default_stream(pipeline: &str, sink: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let pipeline = if pipeline.is_empty() {
        "edgeflow".to_string()
    } else {
        clean(pipeline)
    };
    format!("{pipeline}.{}", clean(sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FlightSinkConfig, OptionError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        edgeflow_engine::parse_options(table)
    }

    fn paths(errors: &[OptionError]) -> Vec<String> {
        errors.iter().map(|e| e.path.join(".")).collect()
    }

    #[test]
    fn the_smallest_config_parses_with_the_documented_defaults() {
        let config = parse("endpoint = \"http://127.0.0.1:50051\"\nspool = \"spool\"").unwrap();
        let settings = config.plan().unwrap();
        assert_eq!(settings.endpoint.port, 50051);
        assert!(settings.tls.is_none());
        assert_eq!(settings.batch_rows, 10_000);
        assert_eq!(settings.batch_bytes, 4 * 1024 * 1024);
        assert_eq!(settings.batch_interval, Duration::from_secs(5));
        assert_eq!(settings.compression, Compression::Zstd);
        assert_eq!(settings.max_spool_size, 1_000_000_000);
        assert_eq!(settings.full_policy, FullPolicy::DropOldest);
        assert_eq!(
            settings.retry,
            (Duration::from_millis(500), Duration::from_secs(30))
        );
        assert_eq!(settings.drain_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_full_mutual_tls_config_parses() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ca.pem", "gw.pem", "gw.key"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let text = format!(
            r#"
            endpoint = "https://collector:50051"
            ca = "{0}/ca.pem"
            cert = "{0}/gw.pem"
            key = "{0}/gw.key"
            stream = "plant1.upstream"
            spool = "/var/lib/edgeflow/spool/upstream"
            batch_rows = 5000
            batch_bytes = "1MiB"
            batch_interval = "2s"
            compression = "lz4"
            max_spool_size = "1GB"
            full_policy = "block"
            retry_initial = "1s"
            retry_max = "1m"
            drain_timeout = "30s"
            "#,
            dir.path().display()
        );
        let settings = parse(&text).unwrap().plan().unwrap();
        let tls = settings.tls.unwrap();
        assert_eq!(tls.server_name, "collector");
        assert!(tls.identity.is_some());
        assert_eq!(settings.batch_bytes, 1024 * 1024);
        assert_eq!(settings.compression, Compression::Lz4);
        assert_eq!(settings.full_policy, FullPolicy::Block);
        assert_eq!(settings.stream.as_deref(), Some("plant1.upstream"));
    }

    #[test]
    fn unknown_options_and_bad_values_name_their_path() {
        let error = parse("endpoint = \"http://h:1\"\nspool = \"s\"\nbatch_row = 5").unwrap_err();
        assert!(error.to_string().contains("batch_row"), "{error}");
        let error =
            parse("endpoint = \"http://h:1\"\nspool = \"s\"\nfull_policy = \"wait\"").unwrap_err();
        assert_eq!(error.path, vec!["full_policy"]);
        let error =
            parse("endpoint = \"http://h:1\"\nspool = \"s\"\ncompression = \"gzip\"").unwrap_err();
        assert_eq!(error.path, vec!["compression"]);
        let error = parse("endpoint = \"http://h:1\"\nspool = \"s\"\nmax_spool_size = \"lots\"")
            .unwrap_err();
        assert_eq!(error.path, vec!["max_spool_size"]);
        let error = parse("endpoint = \"http://h:1\"").unwrap_err();
        assert!(error.to_string().contains("spool"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_with_its_option() {
        let config = parse(
            r#"
            endpoint = "https://collector:50051"
            ca = "/no/such/ca.pem"
            cert = "/no/such/gw.pem"
            stream = "plant 1"
            spool = "s"
            batch_rows = 0
            batch_interval = "0s"
            max_spool_size = 10
            retry_initial = "5s"
            retry_max = "1s"
            "#,
        )
        .unwrap();
        let errors = config.plan().unwrap_err();
        let found = paths(&errors);
        for expected in [
            "ca",
            "cert",
            "key",
            "stream",
            "batch_rows",
            "batch_interval",
            "max_spool_size",
            "retry_max",
        ] {
            assert!(
                found.contains(&expected.to_string()),
                "{expected} missing in {found:?}"
            );
        }
        let ca = errors.iter().find(|e| e.path == ["ca"]).unwrap();
        assert!(ca.message.contains("/no/such/ca.pem"), "{}", ca.message);
        assert!(ca.message.contains("No such file"), "{}", ca.message);
    }

    #[test]
    fn tls_options_need_https() {
        let config =
            parse("endpoint = \"http://h:1\"\nspool = \"s\"\nserver_name = \"h\"").unwrap();
        let errors = config.plan().unwrap_err();
        assert_eq!(paths(&errors), vec!["endpoint"]);
        assert!(errors[0].message.contains("plain http://"));
    }

    #[test]
    fn endpoints_parse_or_say_what_is_wrong() {
        let endpoint = parse_endpoint("https://collector:50051/").unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port, endpoint.tls),
            ("collector", 50051, true)
        );
        assert_eq!(endpoint.url, "https://collector:50051");
        assert_eq!(parse_endpoint("https://collector").unwrap().port, 443);
        let v6 = parse_endpoint("http://[::1]:8815").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8815));
        for (bad, words) in [
            ("grpc://collector:1", "must start with https://"),
            ("collector:50051", "must start with https://"),
            ("https://collector:99999", "invalid port"),
            ("https://collector:0", "invalid port"),
            ("https://:50051", "no host"),
            ("https://collector:50051/flight", "without a path"),
            ("https://[::1", "unclosed"),
        ] {
            let message = parse_endpoint(bad).unwrap_err();
            assert!(message.contains(words), "{bad}: {message}");
            assert!(message.contains(bad), "{bad}: {message}");
        }
    }

    #[test]
    fn the_default_stream_is_pipeline_dot_sink_made_safe() {
        assert_eq!(default_stream("plant1", "upstream"), "plant1.upstream");
        assert_eq!(default_stream("Plant 1/north", "up"), "Plant_1_north.up");
        assert_eq!(default_stream("", "up"), "edgeflow.up");
        assert!(check_stream_name(&default_stream("ä ö", "x y")).is_ok());
    }
}
