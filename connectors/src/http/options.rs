//! Options of the `http` source, as written in a query file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use edgeflow_engine::config::duration;
use serde::{Deserialize, Deserializer};

use crate::schema_options::{SchemaSpec, default_idle_timeout, idle_timeout};

/// The schema used when a query file declares none: the common
/// `{"device_id": "...", "value": 21.5, "timestamp": 1732550000000}` reading.
pub const DEFAULT_SCHEMA: [(&str, &str); 3] = [
    ("device_id", "string"),
    ("value", "float64"),
    ("timestamp", "timestamp_ms"),
];

const fn default_body_limit() -> u64 {
    1024 * 1024
}

fn default_path() -> String {
    "/ingest".into()
}

fn default_device_field() -> String {
    "device_id".into()
}

const fn default_send_timeout() -> Duration {
    Duration::from_millis(500)
}

const fn default_max_pending_rows() -> usize {
    100_000
}

const fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}

/// What happens to a JSON array or JSON-lines body that holds invalid records.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvalidRecords {
    /// The whole request is refused with 400 and nothing of it is kept, so a client can fix
    /// and resend the same body without duplicating the valid records (the default).
    #[default]
    RejectRequest,
    /// The valid records are kept (200, with the number kept and the errors of the others);
    /// a body with no valid record is refused with 400.
    KeepValid,
}

/// `tokens`: a file, or an inline table of device id → token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// A file of `token device_id` lines (`#` starts a comment).
    File(PathBuf),
    /// Inline: device id → token (write `"${DEVICE_7_TOKEN}"` to take it from the
    /// environment).
    Inline(BTreeMap<String, String>),
}

impl<'de> Deserialize<'de> for TokenSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            File(PathBuf),
            Inline(BTreeMap<String, String>),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::File(path)) => Ok(Self::File(path)),
            Ok(Raw::Inline(map)) => Ok(Self::Inline(map)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a file path like tokens = \"/etc/edgeflow/tokens\" or a table of device id = token, like tokens = { \"device-7\" = \"${DEVICE_7_TOKEN}\" }",
            )),
        }
    }
}

/// `tls = { cert, key, client_ca }`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsOptions {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that sign device certificates: turns on mutual TLS, and a
    /// device's id is its certificate's subject common name (CN).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `body_limit`: bytes as a number, or text like `"1MiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteLimit(pub u64);

impl<'de> Deserialize<'de> for ByteLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::Number(n)) => Ok(Self(n)),
            Ok(Raw::Text(text)) => edgeflow_engine::memory::parse_bytes(&text)
                .map(Self)
                .map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(
                "expected a size in bytes, like 1048576 or \"1MiB\"",
            )),
        }
    }
}

/// Options of the `http` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// The address to listen on, like `"0.0.0.0:8080"` (all interfaces) or
    /// `"127.0.0.1:8080"`.
    pub listen: String,
    /// The path readings are POSTed to. Default `"/ingest"`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Largest request body; larger ones get 413. Default 1048576 (1 MiB).
    #[serde(default)]
    pub body_limit: Option<ByteLimit>,
    /// Bearer tokens of the devices: a file of `token device_id` lines, or an inline table
    /// `{ "device-7" = "${DEVICE_7_TOKEN}" }` (device id = token).
    #[serde(default)]
    pub tokens: Option<TokenSource>,
    /// TLS: the server certificate and key, and `client_ca` for mutual TLS.
    #[serde(default)]
    pub tls: Option<ServerTlsOptions>,
    /// Take writes from anyone (no token, no client certificate). Only for a trusted
    /// network or a benchmark: without it, `tokens` or `tls.client_ca` must be set.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// The field holding the device id, checked against the authenticated device (and
    /// filled with it when a record leaves it out). Default `"device_id"`.
    #[serde(default = "default_device_field")]
    pub device_field: String,
    /// `"reject_request"` (default) or `"keep_valid"`: what happens to an array or JSON-lines
    /// body with invalid records.
    #[serde(default)]
    pub invalid_records: InvalidRecords,
    /// How long a request may wait for the pipeline to take its records before it is
    /// answered 503 (with `Retry-After`). Default `"500ms"`.
    #[serde(default = "default_send_timeout", deserialize_with = "duration")]
    pub send_timeout: Duration,
    /// Most records decoded and waiting for the pipeline, over all requests; a request
    /// that would go over is answered 503 at once. Default 100000.
    #[serde(default = "default_max_pending_rows")]
    pub max_pending_rows: usize,
    /// The `Retry-After` given with 503. Default `"1s"` (sent as whole seconds, at least 1).
    #[serde(default = "default_retry_after", deserialize_with = "duration")]
    pub retry_after: Duration,
    /// A record without an event time gets the time its request arrived instead of being
    /// refused. Default false.
    #[serde(default)]
    pub arrival_time: bool,
    /// Fields and their types, in order. Default
    /// `{ device_id = "string", value = "float64", timestamp = "timestamp_ms" }`.
    #[serde(default)]
    pub schema: Option<SchemaSpec>,
    /// The event-time field; optional when there is exactly one timestamp field.
    #[serde(default)]
    pub event_time: Option<String>,
    /// How far behind the newest event time the watermark trails. Default `"0s"`.
    #[serde(default, deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// After this long without rows, the watermark follows the wall clock. Default `"30s"`;
    /// `"off"` never advances it.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
}

impl HttpSourceConfig {
    /// `body_limit` in bytes.
    pub fn body_limit_bytes(&self) -> u64 {
        self.body_limit
            .map_or(default_body_limit(), |limit| limit.0)
    }

    /// The schema as written, or [`DEFAULT_SCHEMA`].
    pub fn schema_spec(&self) -> SchemaSpec {
        self.schema
            .clone()
            .unwrap_or_else(|| SchemaSpec::new(DEFAULT_SCHEMA))
    }
}
