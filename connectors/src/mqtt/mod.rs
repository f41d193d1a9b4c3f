//! The `mqtt` source and sink: sensor messages from an MQTT broker in, alerts and aggregates
//! back out, on rumqttc (MQTT 3.1.1).
//!
//! ```toml
//! [sources.sensors]
//! type = "mqtt"
//! url = "mqtts://broker.local:8883"      # mqtt://host:1883 for plain TCP
//! client_id = "gateway-1-sensors"        # required for the persistent session of qos = 1
//! topics = ["sensors/+/+/temperature", "sensors/+/+/humidity"]
//! qos = 1                                # acknowledged after the dataflow took the message
//! username = "${MQTT_USER}"
//! password = "${MQTT_PASSWORD}"
//! tls = { ca = "certs/ca.pem", cert = "certs/gateway.pem", key = "certs/gateway.key" }
//! format = "number"                      # json | csv | number | auto
//! topic_fields = "sensors/{site}/{device_id}/{metric}"
//! schema = { site = "string", device_id = "string", metric = "string", value = "float64", ts = "timestamp_ms" }
//! max_out_of_orderness = "2s"
//!
//! [sinks.alerts_out]
//! type = "mqtt"
//! inputs = ["alerts"]
//! url = "mqtt://localhost:1883"
//! topic = "alerts/{site}/{device_id}"
//! qos = 1
//! ```
//!
//! * [`options`]: the option structs, URL and topic checks, and [`options::BrokerSettings`]
//!   shared by both.
//! * [`payload`]: message → rows (JSON object / array / lines, CSV, bare number, fields from
//!   the topic) and the reasons a message is rejected.
//! * [`source`]: the connection task, batching, acknowledgements after the dataflow took the
//!   rows.
//! * [`sink`]: rows → JSON messages, the outbox that survives reconnects.
//! * [`connection`]: backoff, errors in words, connection metrics; [`tls`]: rustls from PEM
//!   files on the ring provider.
//!
//! # Rejected messages
//!
//! A message that cannot be decoded is counted in the source's dropped counters by reason
//! (`oversized`, `malformed_json`, `malformed_csv`, `malformed_number`, `wrong_type`,
//! `missing_event_time`, `topic_mismatch`), acknowledged (so it does not come back), and, if a
//! node reads `"<source>.rejected"`, sent there as a row `received_at, topic, reason, error,
//! payload`. With `dead_letter_topic` it is also republished unchanged to that topic.

pub mod connection;
pub mod options;
pub mod payload;
pub mod sink;
pub mod source;
pub mod tls;

#[cfg(test)]
mod tests;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{BoxError, OptionError, Sink, Source, WatermarkPolicy, parse_options};

use self::options::{
    BrokerOptions, BrokerSettings, MqttSinkConfig, MqttSourceConfig, PayloadFormat, Qos,
    check_topic,
};
use self::payload::{DecoderSettings, TopicPattern, rejected_schema};
use self::sink::{MqttSink, TopicTemplate};
use self::source::MqttSource;
use crate::error::ConnectorError;
use crate::schema_options::{resolve_schema, watermark_policy};
use crate::{SinkConfig, SinkKind, SourceConfig, SourceKind};

/// The `mqtt` source kind.
pub const SOURCE_KIND: SourceKind = SourceKind {
    name: "mqtt",
    summary: "Subscribes to MQTT topics (QoS 0/1, persistent sessions, TLS); JSON, CSV or number payloads",
    parse: parse_source,
};

/// The `mqtt` sink kind.
pub const SINK_KIND: SinkKind = SinkKind {
    name: "mqtt",
    summary: "Publishes rows as JSON to an MQTT topic template, with an outbox for QoS 1",
    parse: parse_sink,
};

/// Name of the source's side output carrying rejected messages.
pub const REJECTED: &str = "rejected";

fn parse_source(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<MqttSourceConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

fn parse_sink(table: toml::Table) -> Result<Box<dyn SinkConfig>, OptionError> {
    parse_options::<MqttSinkConfig>(table).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}

impl MqttSourceConfig {
    /// Checks every option; the running source on success.
    ///
    /// # Errors
    /// Every problem, each with its option path.
    pub fn plan(&self) -> Result<MqttSource, Vec<OptionError>> {
        let mut errors = Vec::new();
        let persistent = !self.clean_session.unwrap_or(self.qos == Qos::AtMostOnce);
        let broker = BrokerSettings::check(
            BrokerOptions {
                url: &self.url,
                client_id: self.client_id.as_deref(),
                persistent,
                keep_alive: self.keep_alive,
                inflight: self.inflight,
                max_packet_size: self.max_packet_size,
                username: self.username.as_deref(),
                password: self.password.as_deref(),
                tls: self.tls.as_ref(),
                reconnect_min: self.reconnect_min,
                reconnect_max: self.reconnect_max,
            },
            &mut errors,
        );
        if self.topics.is_empty() {
            errors.push(OptionError::at(
                "topics",
                "no topics to subscribe to; list some, like topics = [\"sensors/#\"]",
            ));
        }
        for (index, topic) in self.topics.iter().enumerate() {
            if let Err(message) = check_topic(topic, true) {
                errors.push(OptionError::at(&format!("topics.{index}"), message));
            }
        }
        if self.batch_rows == 0 {
            errors.push(OptionError::at(
                "batch_rows",
                "batch_rows must be at least 1",
            ));
        }
        if self.max_payload_size == 0 {
            errors.push(OptionError::at(
                "max_payload_size",
                "max_payload_size must be at least 1",
            ));
        } else if self.max_payload_size > self.max_packet_size {
            errors.push(
                OptionError::at(
                    "max_payload_size",
                    format!(
                        "max_payload_size ({}) is larger than max_packet_size ({}); larger messages would break the connection instead of being rejected",
                        self.max_payload_size, self.max_packet_size
                    ),
                )
                .with_hint("raise max_packet_size too"),
            );
        }
        if let Some(topic) = &self.dead_letter_topic
            && let Err(message) = check_topic(topic, false)
        {
            errors.push(OptionError::at("dead_letter_topic", message));
        }
        let delimiter = self.delimiter.unwrap_or(',');
        if !delimiter.is_ascii() || matches!(delimiter, '"' | '\n' | '\r') {
            errors.push(OptionError::at(
                "delimiter",
                format!("invalid delimiter {delimiter:?}: must be one ASCII character other than a quote or a line break"),
            ));
        }
        let csv_options_set = self.delimiter.is_some() || self.csv_columns.is_some();
        if csv_options_set && !matches!(self.format, PayloadFormat::Csv | PayloadFormat::Auto) {
            errors.push(OptionError::at(
                if self.delimiter.is_some() {
                    "delimiter"
                } else {
                    "csv_columns"
                },
                "this option applies to format = \"csv\" (or \"auto\") only",
            ));
        }

        let schema = match resolve_schema(&self.schema, self.event_time.as_deref()) {
            Ok(schema) => Some(schema),
            Err(schema_errors) => {
                errors.extend(schema_errors);
                None
            }
        };
        let mut decoder = None;
        if let Some(schema) = &schema {
            for (name, field_type) in &schema.fields {
                if !self::payload::supported(*field_type) {
                    errors.push(OptionError::at(
                        &format!("schema.{name}"),
                        format!("the mqtt source cannot fill {field_type} fields yet"),
                    ));
                }
            }
            let names = || schema.fields.iter().map(|(n, _)| n.as_str());
            let topic = match &self.topic_fields {
                Some(pattern) => match TopicPattern::parse(pattern, &schema.fields) {
                    Ok(pattern) => Some(pattern),
                    Err(message) => {
                        errors.push(OptionError::at("topic_fields", message));
                        None
                    }
                },
                None => None,
            };
            let value_field = schema
                .fields
                .iter()
                .position(|(n, _)| *n == self.value_field);
            if value_field.is_none()
                && matches!(self.format, PayloadFormat::Number | PayloadFormat::Auto)
            {
                errors.push(
                    OptionError::at(
                        "value_field",
                        format!("'{}' is not a field of the schema; a bare number needs a field to go to", self.value_field),
                    )
                    .suggest(&self.value_field, names()),
                );
            }
            let from_topic: Vec<usize> = topic.iter().flat_map(TopicPattern::fields).collect();
            let csv_columns = match &self.csv_columns {
                Some(columns) => {
                    let mut indices = Vec::with_capacity(columns.len());
                    for (position, name) in columns.iter().enumerate() {
                        match schema.fields.iter().position(|(n, _)| n == name) {
                            Some(index) => indices.push(index),
                            None => errors.push(
                                OptionError::at(
                                    &format!("csv_columns.{position}"),
                                    format!("'{name}' is not a field of the schema"),
                                )
                                .suggest(name, names()),
                            ),
                        }
                    }
                    indices
                }
                None => (0..schema.fields.len())
                    .filter(|i| !from_topic.contains(i))
                    .collect(),
            };
            decoder = Some(DecoderSettings {
                fields: schema.fields.clone(),
                event_time: schema.event_time,
                schema: schema.schema.clone(),
                format: self.format,
                topic,
                value_field,
                csv_columns,
                delimiter: delimiter as u8,
                arrival_time: self.arrival_time,
                max_payload_size: self.max_payload_size,
            });
        }
        match (broker, decoder) {
            (Some(broker), Some(decoder)) if errors.is_empty() => Ok(MqttSource {
                broker,
                topics: self.topics.clone(),
                qos: self.qos,
                decoder,
                batch_rows: self.batch_rows,
                linger: self.linger,
                dead_letter_topic: self.dead_letter_topic.clone(),
            }),
            _ => Err(errors),
        }
    }
}

impl SourceConfig for MqttSourceConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.plan().map(|source| source.decoder.schema.clone())
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.max_out_of_orderness, self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let source = self.plan().map_err(ConnectorError::Options)?;
        // Read the TLS files now, so a missing one stops the start with its name.
        if source.broker.address.tls {
            self::tls::client_config(&source.broker.tls)?;
        }
        Ok(Box::new(source))
    }

    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        vec![(REJECTED.to_string(), rejected_schema())]
    }
}

impl MqttSinkConfig {
    /// Checks every option against the input schema; the running sink on success.
    ///
    /// # Errors
    /// Every problem, each with its option path.
    pub fn plan(&self, input: &SchemaRef) -> Result<MqttSink, Vec<OptionError>> {
        let mut errors = Vec::new();
        let broker = BrokerSettings::check(
            BrokerOptions {
                url: &self.url,
                client_id: self.client_id.as_deref(),
                persistent: false,
                keep_alive: self.keep_alive,
                inflight: self.inflight,
                max_packet_size: self.max_packet_size,
                username: self.username.as_deref(),
                password: self.password.as_deref(),
                tls: self.tls.as_ref(),
                reconnect_min: self.reconnect_min,
                reconnect_max: self.reconnect_max,
            },
            &mut errors,
        );
        let topic = match TopicTemplate::parse(&self.topic) {
            Ok(template) => {
                let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
                for field in template.fields() {
                    if !names.contains(&field) {
                        errors.push(
                            OptionError::at(
                                "topic",
                                format!(
                                    "'{{{field}}}' in topic '{}' is not a column of the input",
                                    self.topic
                                ),
                            )
                            .suggest(field, names.iter().copied()),
                        );
                    }
                }
                let literal = template.render(&serde_json::Map::new());
                if let Err(message) = check_topic(&literal, false) {
                    errors.push(OptionError::at("topic", message));
                }
                Some(template)
            }
            Err(message) => {
                errors.push(OptionError::at("topic", message));
                None
            }
        };
        if self.batch == 0 {
            errors.push(OptionError::at(
                "batch",
                "batch must be at least 1 row per message",
            ));
        }
        if self.outbox == 0 {
            errors.push(OptionError::at(
                "outbox",
                "outbox must hold at least 1 message",
            ));
        }
        match (broker, topic) {
            (Some(broker), Some(topic)) if errors.is_empty() => Ok(MqttSink {
                broker,
                topic,
                qos: self.qos,
                retain: self.retain,
                batch: self.batch,
                outbox: self.outbox,
                drain_timeout: self.drain_timeout,
            }),
            _ => Err(errors),
        }
    }
}

impl SinkConfig for MqttSinkConfig {
    fn check(&self, input: &SchemaRef) -> Vec<OptionError> {
        self.plan(input).err().unwrap_or_default()
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        let sink = self.plan(input).map_err(ConnectorError::Options)?;
        if sink.broker.address.tls {
            self::tls::client_config(&sink.broker.tls)?;
        }
        Ok(Box::new(sink))
    }
}
