//! The running `mqtt` sink: rows as JSON messages to a topic template, through an outbox that
//! keeps every QoS 1 message until the broker acknowledged it.
//!
//! ```text
//!  SinkInput ─▶ rows as JSON ─▶ outbox (seq → message) ─▶ rumqttc client ─▶ broker
//!                                   ▲                                        │
//!                                   └──────── PUBACK(pkid) ◀─ connection task┘
//! ```
//!
//! rumqttc forgets unacknowledged publications when the broker starts a fresh session (for
//! example after a broker restart without persistence), so the sink keeps its own outbox:
//! each message is removed only when its PUBACK arrives (QoS 1) or once it is written to the
//! socket (QoS 0). Each connection gets a fresh rumqttc client with a clean session; after a
//! disconnect, everything still in the outbox is published again, in order, on the next
//! connection. A message may then reach subscribers twice (at least once), never zero times.
//!
//! Packet ids are matched to outbox entries through rumqttc's `Outgoing::Publish(pkid)`
//! events, which come in the order the publications were queued.
//!
//! When the outbox holds `outbox` messages, the sink stops taking rows, so a broker that is
//! away slows the pipeline down instead of growing memory. At the end of input the sink keeps
//! delivering for up to `drain_timeout`, then reports what was lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::arrow::json::LineDelimitedWriter;
use edgeflow_engine::{BoxError, BoxFuture, NodeMetrics, Sink, SinkEvent, SinkInput, SinkSummary};
use rumqttc::{AsyncClient, ConnectionError, Event, Incoming, Outgoing};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::connection::{
    Backoff, MqttError, broker_name, describe, is_configuration_error, mqtt_options, on_connected,
    on_disconnected,
};
use super::options::{BrokerSettings, Qos};
use crate::timestamps::with_offset_labels;

/// A topic with `{field}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<TopicPart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TopicPart {
    Text(String),
    Field(String),
}

impl TopicTemplate {
    /// Parses `alerts/{site}/{device_id}`.
    ///
    /// # Errors
    /// Unbalanced braces, quoting the template.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(format!("topic '{template}' has a '}}' without its '{{'"));
            }
            if open > 0 {
                parts.push(TopicPart::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("topic '{template}' has a '{{' without its '}}'"))?;
            let name = &after[..close];
            if name.is_empty() || name.contains('{') {
                return Err(format!(
                    "topic '{template}' has an empty or nested placeholder"
                ));
            }
            parts.push(TopicPart::Field(name.to_string()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("topic '{template}' has a '}}' without its '{{'"));
        }
        if !rest.is_empty() {
            parts.push(TopicPart::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The fields the template reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TopicPart::Field(name) => Some(name.as_str()),
            TopicPart::Text(_) => None,
        })
    }

    /// The topic of one row. Null values, and values that would change the topic's shape
    /// (`/`, `+`, `#`), become `_`.
    pub fn render(&self, row: &Map<String, Value>) -> String {
        let mut topic = String::new();
        for part in &self.parts {
            match part {
                TopicPart::Text(text) => topic.push_str(text),
                TopicPart::Field(name) => {
                    let value = match row.get(name) {
                        None | Some(Value::Null) => "_".to_string(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    };
                    if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
                        topic.push('_');
                    } else {
                        topic.push_str(&value);
                    }
                }
            }
        }
        topic
    }
}

/// The checked, ready-to-run sink.
#[derive(Clone, Debug)]
pub struct MqttSink {
    pub(crate) broker: BrokerSettings,
    pub(crate) topic: TopicTemplate,
    pub(crate) qos: Qos,
    pub(crate) retain: bool,
    pub(crate) batch: usize,
    pub(crate) outbox: usize,
    pub(crate) drain_timeout: Duration,
}

/// One message waiting for its acknowledgement.
#[derive(Clone, Debug)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    rows: usize,
}

/// What a connection task reports.
enum Polled {
    Connected,
    /// A publication went out with this packet id (0 for QoS 0).
    Sent(u16),
    Acked(u16),
    Failed(ConnectionError),
}

/// Messages not yet acknowledged, in order, and where each one stands.
#[derive(Default)]
struct Outbox {
    messages: BTreeMap<u64, Message>,
    next_seq: u64,
    /// Not yet handed to the current client.
    unsent: VecDeque<u64>,
    /// Handed to the client, waiting for their packet id.
    awaiting_id: VecDeque<u64>,
    /// Written with this packet id, waiting for PUBACK.
    inflight: HashMap<u16, u64>,
}

impl Outbox {
    fn push(&mut self, message: Message) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.messages.insert(seq, message);
        self.unsent.push_back(seq);
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    /// A new connection: everything not acknowledged goes out again, in order.
    fn restart(&mut self) {
        self.unsent = self.messages.keys().copied().collect();
        self.awaiting_id.clear();
        self.inflight.clear();
    }

    /// The message written with `pkid`; QoS 0 (`pkid` 0) is done once written.
    fn sent(&mut self, pkid: u16) -> Option<Message> {
        let seq = self.awaiting_id.pop_front()?;
        if pkid == 0 {
            return self.messages.remove(&seq);
        }
        self.inflight.insert(pkid, seq);
        None
    }

    fn acked(&mut self, pkid: u16) -> Option<Message> {
        let seq = self.inflight.remove(&pkid)?;
        self.messages.remove(&seq)
    }
}

impl Sink for MqttSink {
    fn run(self: Box<Self>, input: SinkInput) -> BoxFuture<'static, Result<SinkSummary, BoxError>> {
        Box::pin(async move { self.run_loop(input).await.map_err(BoxError::from) })
    }
}

struct Connection {
    client: AsyncClient,
    events: mpsc::Receiver<Polled>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MqttSink {
    fn connect(&self, options: &rumqttc::MqttOptions) -> Connection {
        let capacity = usize::from(self.broker.inflight) + 16;
        let (client, eventloop) = AsyncClient::new(options.clone(), capacity);
        let (sender, events) = mpsc::channel(1024);
        let task = tokio::spawn(poll_once_connected(eventloop, sender));
        Connection {
            client,
            events,
            task,
        }
    }

    async fn run_loop(self, mut input: SinkInput) -> Result<SinkSummary, MqttError> {
        let mut options = mqtt_options(&self.broker, false)?;
        // Each connection starts clean: the outbox, not the broker, remembers what is unacked.
        options.set_clean_session(true);
        let broker = broker_name(&self.broker);
        let metrics = input.metrics().clone();
        let mut outbox = Outbox::default();
        let mut summary = SinkSummary::default();
        let mut backoff = Backoff::new(self.broker.reconnect.0, self.broker.reconnect.1);
        let mut connection = self.connect(&options);
        let mut connected = false;
        let mut ever_connected = false;
        let mut input_done = false;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if input_done && outbox.len() == 0 {
                break;
            }
            // Hand queued messages to the client while it has room.
            if connected {
                while let Some(&seq) = outbox.unsent.front() {
                    let Some(message) = outbox.messages.get(&seq) else {
                        outbox.unsent.pop_front();
                        continue;
                    };
                    match connection.client.try_publish(
                        message.topic.clone(),
                        self.qos.to_rumqttc(),
                        self.retain,
                        message.payload.clone(),
                    ) {
                        Ok(()) => {
                            outbox.unsent.pop_front();
                            outbox.awaiting_id.push_back(seq);
                        }
                        Err(_) => break,
                    }
                }
            }
            let take_rows = !input_done && outbox.len() < self.outbox;
            let deadline = drain_deadline;
            let step = tokio::select! {
                event = input.recv(), if take_rows => Step::Input(event),
                polled = connection.events.recv() => Step::Polled(polled),
                () = sleep_until(deadline), if deadline.is_some() => Step::DrainTimeout,
            };
            match step {
                Step::Input(Some(SinkEvent::Rows(rows))) => {
                    for message in self.messages(&rows)? {
                        outbox.push(message);
                    }
                    metrics.set_value("outbox", outbox.len() as u64);
                }
                Step::Input(Some(SinkEvent::Watermark(_))) => {}
                Step::Input(None) => {
                    input_done = true;
                    drain_deadline = Some(Instant::now() + self.drain_timeout);
                }
                Step::Polled(Some(Polled::Connected)) => {
                    on_connected(&metrics, !ever_connected);
                    if !ever_connected {
                        info!(sink = %input.name(), broker = %broker, "Connected to MQTT broker");
                    } else {
                        info!(sink = %input.name(), broker = %broker, pending = outbox.len(), "Reconnected to MQTT broker; publishing the outbox again");
                    }
                    connected = true;
                    ever_connected = true;
                    backoff.reset();
                }
                Step::Polled(Some(Polled::Sent(pkid))) => {
                    if let Some(message) = outbox.sent(pkid) {
                        delivered(&metrics, &mut summary, &message);
                    }
                }
                Step::Polled(Some(Polled::Acked(pkid))) => {
                    if let Some(message) = outbox.acked(pkid) {
                        delivered(&metrics, &mut summary, &message);
                    }
                }
                Step::Polled(Some(Polled::Failed(error))) => {
                    let reason = describe(&error);
                    on_disconnected(&metrics, connected);
                    if !ever_connected && is_configuration_error(&error) {
                        return Err(MqttError::Connect { broker, reason });
                    }
                    let delay = backoff.next_delay();
                    warn!(sink = %input.name(), broker = %broker, pending = outbox.len(), "MQTT connection lost or refused: {reason}; reconnecting in {delay:?}");
                    connected = false;
                    drop(connection);
                    tokio::time::sleep(delay).await;
                    outbox.restart();
                    connection = self.connect(&options);
                }
                Step::Polled(None) => {
                    // The connection task ended without an error (it never does on its own):
                    // start a new connection.
                    connected = false;
                    outbox.restart();
                    connection = self.connect(&options);
                }
                Step::DrainTimeout => {
                    let _ = connection.client.try_disconnect();
                    return Err(MqttError::Undelivered {
                        broker,
                        count: outbox.len(),
                        timeout: self.drain_timeout,
                    });
                }
            }
            metrics.set_value("outbox", outbox.len() as u64);
        }
        // Everything acknowledged: leave politely.
        if connection.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(polled) = connection.events.recv().await {
                    if matches!(polled, Polled::Failed(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        metrics.set_value("connected", 0);
        Ok(summary)
    }

    /// [`Self::messages`] as `(topic, payload)` pairs, for tests.
    #[cfg(test)]
    pub(crate) fn messages_for_test(&self, rows: &RecordBatch) -> Vec<(String, Vec<u8>)> {
        self.messages(rows)
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.topic, m.payload))
            .collect()
    }

    /// The messages for one batch of rows: one per row, or up to `batch` rows with the same
    /// topic per message (as a JSON array).
    fn messages(&self, rows: &RecordBatch) -> Result<Vec<Message>, MqttError> {
        let printable = with_offset_labels(rows);
        let mut buffer = Vec::with_capacity(rows.num_rows() * 96);
        let mut writer = LineDelimitedWriter::new(&mut buffer);
        writer
            .write(&printable)
            .and_then(|()| writer.finish())
            .map_err(|error| MqttError::Internal(format!("cannot encode rows as JSON: {error}")))?;
        let mut out: Vec<Message> = Vec::new();
        let mut open: Option<(String, Vec<&[u8]>)> = None;
        for line in buffer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let topic = if self.topic.fields().next().is_none() {
                self.topic.render(&Map::new())
            } else {
                let object: Map<String, Value> = serde_json::from_slice(line).map_err(|error| {
                    MqttError::Internal(format!("JSON rows do not parse: {error}"))
                })?;
                self.topic.render(&object)
            };
            if self.batch <= 1 {
                out.push(Message {
                    topic,
                    payload: line.to_vec(),
                    rows: 1,
                });
                continue;
            }
            match &mut open {
                Some((current, lines)) if *current == topic && lines.len() < self.batch => {
                    lines.push(line);
                }
                _ => {
                    if let Some((topic, lines)) = open.take() {
                        out.push(array_message(topic, &lines));
                    }
                    open = Some((topic, vec![line]));
                }
            }
        }
        if let Some((topic, lines)) = open.take() {
            out.push(array_message(topic, &lines));
        }
        Ok(out)
    }
}

enum Step {
    Input(Option<SinkEvent>),
    Polled(Option<Polled>),
    DrainTimeout,
}

fn array_message(topic: String, lines: &[&[u8]]) -> Message {
    let mut payload = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
    payload.push(b'[');
    for (index, line) in lines.iter().enumerate() {
        if index > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(line);
    }
    payload.push(b']');
    Message {
        topic,
        payload,
        rows: lines.len(),
    }
}

fn delivered(metrics: &Arc<NodeMetrics>, summary: &mut SinkSummary, message: &Message) {
    metrics.add_rows_out(message.rows);
    summary.rows += message.rows as u64;
    summary.files += 1;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Polls one connection until it fails; reports what the sink needs to know. A new
/// connection gets a new task (and a new client), so nothing of an old session leaks into it.
async fn poll_once_connected(mut eventloop: rumqttc::EventLoop, events: mpsc::Sender<Polled>) {
    loop {
        let polled = match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => Polled::Connected,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Polled::Sent(pkid),
            Ok(Event::Incoming(Incoming::PubAck(ack))) => Polled::Acked(ack.pkid),
            Ok(_) => continue,
            Err(error) => {
                let _ = events.send(Polled::Failed(error)).await;
                return;
            }
        };
        if events.send(polled).await.is_err() {
            return;
        }
    }
}
