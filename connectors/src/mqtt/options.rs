//! The options of the `mqtt` source and sink, and the checked broker settings both share.
//!
//! Both node kinds take the same connection options (`url`, `client_id`, `username`,
//! `password`, `keep_alive`, `inflight`, `max_packet_size`, `tls`, `reconnect_min`,
//! `reconnect_max`); serde's `flatten` does not mix with `deny_unknown_fields`, so each config
//! declares them and hands them to `BrokerSettings::check`.

use std::path::PathBuf;
use std::time::Duration;

use edgeflow_engine::OptionError;
use edgeflow_engine::config::duration;
use serde::Deserialize;

use crate::schema_options::{SchemaSpec, default_idle_timeout, idle_timeout};

/// `tls = { ca = "…", cert = "…", key = "…" }`: PEM files for `mqtts://`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// The CA certificate(s) that signed the broker's certificate (PEM). Default: the
    /// system's roots in `/etc/ssl/certs/ca-certificates.crt`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This client's certificate chain (PEM), for brokers that require client certificates
    /// (mutual TLS). Needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// QoS level of a subscription or a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// At most once: nothing is acknowledged, a message in flight during a disconnect is lost.
    AtMostOnce,
    /// At least once: acknowledged, redelivered after a disconnect (so possibly twice).
    AtLeastOnce,
}

impl Qos {
    pub(crate) fn to_rumqttc(self) -> rumqttc::QoS {
        match self {
            Self::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Self::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        }
    }
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u8::deserialize(deserializer)? {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            other => Err(serde::de::Error::custom(format!(
                "invalid qos {other}: must be 0 (at most once) or 1 (at least once); QoS 2 is not supported"
            ))),
        }
    }
}

const fn default_qos() -> Qos {
    Qos::AtLeastOnce
}

const fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

const fn default_inflight() -> u16 {
    100
}

/// 1 MiB: well above rumqttc's 10 KiB default.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;

const fn default_max_packet_size() -> usize {
    DEFAULT_MAX_PACKET_SIZE
}

const fn default_reconnect_min() -> Duration {
    Duration::from_millis(100)
}

const fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

/// Payload formats the source decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// A JSON object, a JSON array of objects, or JSON lines (one object per line).
    Json,
    /// One CSV line (or several, one row each), columns in `csv_columns` order.
    Csv,
    /// A bare number (`21.5`) for `value_field`; the other fields come from the topic.
    Number,
    /// Decided per message: `{` or `[` is JSON, a number is a number, anything else CSV.
    Auto,
}

const fn default_format() -> PayloadFormat {
    PayloadFormat::Json
}

const fn default_max_payload_size() -> usize {
    256 * 1024
}

const fn default_batch_rows() -> usize {
    1024
}

const fn default_linger() -> Duration {
    Duration::from_millis(20)
}

fn default_value_field() -> String {
    "value".to_string()
}

/// Options of the `mqtt` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// The broker: `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS,
    /// default port 8883).
    pub url: String,
    /// The client id. Required for a persistent session (the broker keeps the session under
    /// it); default for a clean session: a random `edgeflow-…` id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic filters to subscribe to; `+` matches one level, `#` (last) any number.
    pub topics: Vec<String>,
    /// 0 (at most once) or 1 (at least once, acknowledged after the dataflow took the
    /// message). Default 1.
    #[serde(default = "default_qos")]
    pub qos: Qos,
    /// Start a fresh session on every connect. Default: false with `qos = 1` (the broker
    /// keeps the subscriptions and queues messages while edgeflow is away), true with 0.
    #[serde(default)]
    pub clean_session: Option<bool>,
    /// How often to ping an idle connection. Default `"30s"`.
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// Most QoS 1 messages held unacknowledged: a batch is handed to the dataflow (and its
    /// messages acknowledged) at the latest when this many wait, or earlier as soon as no
    /// more messages are waiting to be read (so a broker that stops at its own in-flight
    /// limit never stalls the source). Default 100.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// Largest MQTT packet accepted, in bytes. A larger packet breaks the connection
    /// (rumqttc's rule), so keep it well above `max_payload_size`. Default 1048576 (1 MiB).
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: usize,
    /// User name (write `"${MQTT_USER}"` to take it from the environment).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (write `"${MQTT_PASSWORD}"` to take it from the environment).
    #[serde(default)]
    pub password: Option<String>,
    /// TLS files for `mqtts://`.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// First delay before reconnecting; doubles (with jitter) after each failed attempt and
    /// starts over after a successful connect. Default `"100ms"`.
    #[serde(default = "default_reconnect_min", deserialize_with = "duration")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts. Default `"30s"`.
    #[serde(default = "default_reconnect_max", deserialize_with = "duration")]
    pub reconnect_max: Duration,
    /// `"json"`, `"csv"`, `"number"` or `"auto"`. Default `"json"`.
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    /// Fields taken from topic levels, like `"sensors/{site}/{device_id}/{metric}"`; `+` skips a
    /// level, a trailing `#` any rest. A payload's own value for a field wins.
    #[serde(default)]
    pub topic_fields: Option<String>,
    /// The field a bare-number payload fills. Default `"value"`.
    #[serde(default = "default_value_field")]
    pub value_field: String,
    /// CSV: the fields of the columns, in order. Default: the schema's fields not filled from
    /// the topic, in schema order.
    #[serde(default)]
    pub csv_columns: Option<Vec<String>>,
    /// CSV: the field separator, one ASCII character. Default `","`.
    #[serde(default)]
    pub delimiter: Option<char>,
    /// A message without an event time gets the time it arrived instead of being rejected.
    /// Default: false (bare numbers always use the arrival time unless the topic gives one).
    #[serde(default)]
    pub arrival_time: bool,
    /// Largest payload decoded, in bytes; larger ones are rejected as `oversized`. Default
    /// 262144 (256 KiB).
    #[serde(default = "default_max_payload_size")]
    pub max_payload_size: usize,
    /// Also republish every rejected payload, unchanged, to this topic (QoS 0).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Most rows per batch handed to the dataflow. Default 1024.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Longest a decoded row waits for its batch to fill. Default `"20ms"`.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// Fields and their types, in order.
    pub schema: SchemaSpec,
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

const fn default_batch_messages() -> usize {
    1
}

const fn default_outbox() -> usize {
    100_000
}

const fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Options of the `mqtt` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// The broker: `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: String,
    /// The client id. Default: a random `edgeflow-…` id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The topic of each message; `{field}` is replaced by the row's value of that field,
    /// like `"alerts/{site}/{device_id}"`. Rows whose value is null (or contains `+`, `#`
    /// or `/`) are published with `_` in its place.
    pub topic: String,
    /// 0 or 1. Default 1: a message stays in the outbox until the broker acknowledged it,
    /// and is published again after a reconnect.
    #[serde(default = "default_qos")]
    pub qos: Qos,
    /// Ask the broker to keep the last message of each topic for new subscribers.
    #[serde(default)]
    pub retain: bool,
    /// Rows per message: 1 publishes one JSON object per row; more publishes a JSON array of
    /// up to that many rows with the same topic. Default 1.
    #[serde(default = "default_batch_messages")]
    pub batch: usize,
    /// Most messages held unacknowledged (QoS 1) before the sink stops taking rows (the
    /// pipeline then slows down instead of growing memory). Default 100000.
    #[serde(default = "default_outbox")]
    pub outbox: usize,
    /// At the end of input, how long to keep trying to deliver what the outbox holds.
    /// Default `"30s"`.
    #[serde(default = "default_drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// How often to ping an idle connection. Default `"30s"`.
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// Most QoS 1 publications in flight at once. Default 100.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// Largest MQTT packet, in bytes. Default 1048576 (1 MiB).
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: usize,
    /// User name (write `"${MQTT_USER}"` to take it from the environment).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (write `"${MQTT_PASSWORD}"` to take it from the environment).
    #[serde(default)]
    pub password: Option<String>,
    /// TLS files for `mqtts://`.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// First delay before reconnecting. Default `"100ms"`.
    #[serde(default = "default_reconnect_min", deserialize_with = "duration")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts. Default `"30s"`.
    #[serde(default = "default_reconnect_max", deserialize_with = "duration")]
    pub reconnect_max: Duration,
}

/// Where the broker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]`.
///
/// # Errors
/// A message quoting the URL and saying what is wrong with it.
pub fn parse_url(url: &str) -> Result<BrokerAddress, String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("'{url}' is not a broker URL; write mqtt://host:1883 or mqtts://host:8883")
    })?;
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => (false, 1883),
        "mqtts" | "ssl" | "tls" => (true, 8883),
        other => {
            return Err(format!(
                "unknown scheme '{other}' in '{url}'; use mqtt:// (plain) or mqtts:// (TLS)"
            ));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') {
        return Err(format!(
            "'{url}' has a path; a broker URL is only mqtt://host:port"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "'{url}' carries credentials; use the username and password options"
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("'{url}': unclosed '[' in an IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("'{url}': unexpected '{after}' after the address")),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    let port = match port {
        None => default_port,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("invalid port '{text}' in '{url}'")),
        },
    };
    Ok(BrokerAddress {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Connection settings, checked, shared by the source and the sink.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// Where to connect.
    pub address: BrokerAddress,
    /// The client id.
    pub client_id: String,
    /// Keep the session between connections.
    pub persistent: bool,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Outgoing in-flight limit (and, for the source, unacknowledged incoming limit).
    pub inflight: u16,
    /// Largest packet, both directions.
    pub max_packet_size: usize,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// TLS files (`mqtts://` only).
    pub tls: TlsOptions,
    /// Reconnect backoff bounds.
    pub reconnect: (Duration, Duration),
}

/// The connection options as written, before checking.
pub(crate) struct BrokerOptions<'a> {
    pub url: &'a str,
    pub client_id: Option<&'a str>,
    pub persistent: bool,
    pub keep_alive: Duration,
    pub inflight: u16,
    pub max_packet_size: usize,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub tls: Option<&'a TlsOptions>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl BrokerSettings {
    /// Checks the connection options; `errors` gets every problem with its option path.
    pub(crate) fn check(options: BrokerOptions<'_>, errors: &mut Vec<OptionError>) -> Option<Self> {
        let address = match parse_url(options.url) {
            Ok(address) => Some(address),
            Err(message) => {
                errors.push(OptionError::at("url", message));
                None
            }
        };
        let client_id = match options.client_id.map(str::trim) {
            Some("") => {
                errors.push(OptionError::at("client_id", "the client id is empty"));
                String::new()
            }
            Some(id) => {
                if id.len() > 65_535 {
                    errors.push(OptionError::at(
                        "client_id",
                        "the client id is longer than 65535 bytes",
                    ));
                }
                id.to_string()
            }
            None if options.persistent => {
                errors.push(
                    OptionError::at(
                        "client_id",
                        "a persistent session (qos = 1, clean_session = false) needs a client_id: the broker keeps the session under it",
                    )
                    .with_hint("set client_id = \"gateway-1-sensors\" (unique per broker), or clean_session = true"),
                );
                String::new()
            }
            None => format!("edgeflow-{:016x}", rand::random::<u64>()),
        };
        if options.keep_alive < Duration::from_secs(1) && !options.keep_alive.is_zero() {
            errors.push(OptionError::at(
                "keep_alive",
                "keep_alive must be at least 1s (or 0s to turn pings off)",
            ));
        }
        if options.inflight == 0 {
            errors.push(OptionError::at("inflight", "inflight must be at least 1"));
        }
        if options.max_packet_size < 1024 {
            errors.push(OptionError::at(
                "max_packet_size",
                format!(
                    "max_packet_size {} is too small; it is in bytes (default 1048576)",
                    options.max_packet_size
                ),
            ));
        }
        let credentials = match (options.username, options.password) {
            (Some(user), password) => Some((user.to_string(), password.unwrap_or("").to_string())),
            (None, Some(_)) => {
                errors.push(OptionError::at("password", "a password needs a username"));
                None
            }
            (None, None) => None,
        };
        let tls = options.tls.cloned().unwrap_or_default();
        if options.tls.is_some() && address.as_ref().is_some_and(|a| !a.tls) {
            errors.push(
                OptionError::at(
                    "tls",
                    "tls options are set but the url is mqtt:// (plain TCP)",
                )
                .with_hint("use mqtts://host:8883 to connect with TLS"),
            );
        }
        if tls.cert.is_some() != tls.key.is_some() {
            let missing = if tls.cert.is_some() {
                "tls.key"
            } else {
                "tls.cert"
            };
            errors.push(OptionError::at(
                missing,
                "a client certificate needs both tls.cert and tls.key",
            ));
        }
        if options.reconnect_min.is_zero() {
            errors.push(OptionError::at(
                "reconnect_min",
                "reconnect_min must be longer than 0s (a zero delay makes a reconnect storm)",
            ));
        }
        if options.reconnect_max < options.reconnect_min {
            errors.push(OptionError::at(
                "reconnect_max",
                "reconnect_max must be at least reconnect_min",
            ));
        }
        Some(Self {
            address: address?,
            client_id,
            persistent: options.persistent,
            keep_alive: options.keep_alive,
            inflight: options.inflight.max(1),
            max_packet_size: options.max_packet_size,
            credentials,
            tls,
            reconnect: (options.reconnect_min, options.reconnect_max),
        })
    }
}

/// Checks one topic filter (`+` and `#` wildcards) or, with `filter = false`, a topic name.
pub(crate) fn check_topic(topic: &str, filter: bool) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic is empty".into());
    }
    if topic.contains('\0') {
        return Err(format!("topic '{topic}' contains a NUL character"));
    }
    let levels: Vec<&str> = topic.split('/').collect();
    for (index, level) in levels.iter().enumerate() {
        let wildcard = level.contains('+') || level.contains('#');
        if !wildcard {
            continue;
        }
        if !filter {
            return Err(format!(
                "topic '{topic}' contains a wildcard; wildcards are for subscriptions only"
            ));
        }
        let ok = match *level {
            "+" => true,
            "#" => index == levels.len() - 1,
            _ => false,
        };
        if !ok {
            return Err(format!(
                "invalid topic filter '{topic}': '+' must fill a whole level and '#' must be the whole last level (like sensors/+/temperature or sensors/#)"
            ));
        }
    }
    Ok(())
}
