//! The `http` source: devices and scripts POST readings as JSON, authenticated by bearer
//! token or client certificate; a 2xx answer means the records are in the dataflow.
//!
//! ```toml
//! [sources.readings]
//! type = "http"
//! listen = "0.0.0.0:8080"
//! path = "/ingest"                          # default
//! body_limit = "1MiB"                       # larger bodies get 413
//! tokens = "/etc/edgeflow/device-tokens"    # lines of `token device_id`, or inline:
//! # tokens = { "device-7" = "${DEVICE_7_TOKEN}" }
//! tls = { cert = "certs/server.pem", key = "certs/server.key", client_ca = "certs/devices-ca.pem" }
//! # schema defaults to { device_id = "string", value = "float64", timestamp = "timestamp_ms" }
//! max_out_of_orderness = "5s"
//! ```
//!
//! ```sh
//! curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
//!      -d '{"device_id": "device-7", "value": 21.5, "timestamp": 1732550000000}' \
//!      http://gateway:8080/ingest
//! ```
//!
//! * [`options`]: the options; [`auth`]: tokens and certificate subjects; [`tls`]: rustls on
//!   ring; [`decode`]: bodies → rows with an error per invalid record; [`server`]: the accept
//!   loop, the handler and the batcher.
//!
//! # Answers
//!
//! | status | when | counted as (dropped reason) |
//! |---|---|---|
//! | 200 | the records are in the dataflow: `{"accepted": n}` | |
//! | 400 | invalid JSON or records: every invalid record listed with its line or position, field and value | `malformed_json`, `wrong_type`, `missing_event_time` per record, `rejected_with_request` for the valid records refused with them |
//! | 401 | no or unknown bearer token (and no client certificate) | `unauthenticated` (per request) |
//! | 403 | a record names another device than the credentials | `wrong_device`, `rejected_with_request` |
//! | 404 / 405 | another path / another method than POST | |
//! | 413 | body over `body_limit` | `body_too_large` (per request) |
//! | 415 | `Content-Type` other than `application/json` or `application/x-ndjson` | `unsupported_media_type` (per request) |
//! | 503 + `Retry-After` | the pipeline did not take the records within `send_timeout`, or `max_pending_rows` records already wait | `overloaded` |
//!
//! An array or JSON-lines body with invalid records is **refused whole** by default
//! (`invalid_records = "reject_request"`): nothing of it is kept, so the client can fix it and
//! send it again without duplicates. With `invalid_records = "keep_valid"` the valid records
//! are kept and the answer is 200 with `accepted`, `rejected` and the `errors`.
//!
//! Requests refused before their body is read (401, 413, 415) count one per request; the
//! others count records. The connector values are `listening` (1 while accepting) and
//! `requests`.

pub mod auth;
pub mod decode;
pub mod options;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{BoxError, OptionError, Source, WatermarkPolicy, parse_options};

use self::auth::TokenTable;
use self::decode::{RecordDecoder, supported};
use self::options::HttpSourceConfig;
use self::server::HttpSource;
use crate::error::ConnectorError;
use crate::schema_options::{SourceSchema, resolve_schema, watermark_policy};
use crate::{SourceConfig, SourceKind};

/// The `http` source kind.
pub const KIND: SourceKind = SourceKind {
    name: "http",
    summary: "Takes JSON readings POSTed by devices (bearer tokens or mutual TLS); answers after the dataflow took them",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<HttpSourceConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

/// The options, checked, before anything is opened.
#[derive(Clone, Debug)]
pub struct CheckedHttp {
    /// Where to listen.
    pub address: SocketAddr,
    /// The schema.
    pub schema: SourceSchema,
    /// Index of the device field, when authentication is on.
    pub device_field: Option<usize>,
}

impl HttpSourceConfig {
    /// Checks every option without touching the outside world.
    ///
    /// # Errors
    /// Every problem, each with its option path.
    pub fn check(&self) -> Result<CheckedHttp, Vec<OptionError>> {
        let mut errors = Vec::new();
        let address = match parse_listen(&self.listen) {
            Some(address) => Some(address),
            None => {
                errors.push(
                    OptionError::at(
                        "listen",
                        format!("'{}' is not an address to listen on", self.listen),
                    )
                    .with_hint("write host:port, like \"0.0.0.0:8080\" or \"127.0.0.1:8080\""),
                );
                None
            }
        };
        if !self.path.starts_with('/') || self.path.contains(['{', '}', '*', '?', '#']) {
            errors.push(OptionError::at(
                "path",
                format!(
                    "'{}' is not a plain URL path; write one starting with '/', like \"/ingest\"",
                    self.path
                ),
            ));
        }
        if self.body_limit_bytes() == 0 {
            errors.push(OptionError::at(
                "body_limit",
                "body_limit must be at least 1 byte",
            ));
        }
        if self.max_pending_rows == 0 {
            errors.push(OptionError::at(
                "max_pending_rows",
                "max_pending_rows must be at least 1",
            ));
        }
        if self.send_timeout.is_zero() {
            errors.push(OptionError::at(
                "send_timeout",
                "send_timeout must be longer than 0s",
            ));
        }
        let mutual_tls = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let authenticated = self.tokens.is_some() || mutual_tls;
        if !authenticated && !self.allow_anonymous {
            errors.push(
                OptionError::at(
                    "tokens",
                    "the source takes writes from anyone: set tokens (bearer tokens per device) or tls.client_ca (device certificates)",
                )
                .with_hint("for a trusted network or a benchmark, set allow_anonymous = true"),
            );
        }
        if authenticated && self.allow_anonymous {
            errors.push(OptionError::at(
                "allow_anonymous",
                "allow_anonymous = true contradicts tokens / tls.client_ca; remove one",
            ));
        }
        let schema = match resolve_schema(&self.schema_spec(), self.event_time.as_deref()) {
            Ok(schema) => Some(schema),
            Err(schema_errors) => {
                errors.extend(schema_errors);
                None
            }
        };
        let mut device_field = None;
        if let Some(schema) = &schema {
            for (name, field_type) in &schema.fields {
                if !supported(*field_type) {
                    errors.push(OptionError::at(
                        &format!("schema.{name}"),
                        format!("the http source cannot fill {field_type} fields yet"),
                    ));
                }
            }
            device_field = schema
                .fields
                .iter()
                .position(|(n, _)| *n == self.device_field);
            if authenticated && device_field.is_none() {
                errors.push(
                    OptionError::at(
                        "device_field",
                        format!(
                            "'{}' is not a field of the schema; with authentication every record names its device",
                            self.device_field
                        ),
                    )
                    .suggest(
                        &self.device_field,
                        schema.fields.iter().map(|(n, _)| n.as_str()),
                    ),
                );
            }
        }
        match (address, schema) {
            (Some(address), Some(schema)) if errors.is_empty() => Ok(CheckedHttp {
                address,
                schema,
                device_field: if authenticated { device_field } else { None },
            }),
            _ => Err(errors),
        }
    }
}

/// `host:port` with an IP address or `localhost` (no name lookup while planning).
fn parse_listen(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let port = text.strip_prefix("localhost:")?.parse::<u16>().ok()?;
    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

impl SourceConfig for HttpSourceConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.check().map(|checked| checked.schema.schema)
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.max_out_of_orderness, self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let checked = self.check().map_err(ConnectorError::Options)?;
        let tokens = self.tokens.as_ref().map(TokenTable::load).transpose()?;
        let tls = match &self.tls {
            Some(options) => Some(self::tls::server_config(options, tokens.is_some())?),
            None => None,
        };
        // Bind now, so a port in use stops the start with its address.
        let listener = std::net::TcpListener::bind(checked.address).map_err(|error| {
            format!(
                "cannot listen on {}: {}",
                checked.address,
                crate::error::io_reason(&error)
            )
        })?;
        let address = listener.local_addr().unwrap_or(checked.address);
        let decoder = RecordDecoder::new(
            checked.schema.fields.clone(),
            checked.schema.event_time,
            checked.device_field,
            checked.schema.schema.clone(),
            self.arrival_time,
        );
        Ok(Box::new(HttpSource {
            listener,
            address,
            path: self.path.clone(),
            body_limit: self.body_limit_bytes(),
            tokens,
            mutual_tls: self.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            tls,
            decoder,
            invalid_records: self.invalid_records,
            send_timeout: self.send_timeout,
            max_pending_rows: self.max_pending_rows,
            retry_after_secs: self.retry_after.as_secs().max(1),
        }))
    }
}
