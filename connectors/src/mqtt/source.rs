//! The running `mqtt` source: a connection task that polls rumqttc, and the source loop that
//! decodes messages, hands batches to the dataflow and then acknowledges them.
//!
//! ```text
//!  broker ─▶ connection task (EventLoop::poll, backoff, resubscribe) ─▶ bounded channel
//!         ─▶ source loop: decode ─▶ batch ─▶ SourceContext::send ─▶ PUBACKs, in arrival order
//! ```
//!
//! # At least once
//!
//! With `qos = 1` the client acknowledges by hand (`manual_acks`): a message's PUBACK goes out
//! only after `SourceContext::send` returned for the batch holding its rows (or its reject
//! went to the `rejected` side output), in the order the messages arrived. A crash before
//! that leaves the message unacknowledged, and the broker delivers it again (to the
//! persistent session) after the restart. Messages can therefore arrive twice, never zero
//! times; deduplicate downstream on a key such as (device, ts) where it matters.
//!
//! Acknowledgements are tied to the connection that delivered the message: after a
//! reconnect, the broker redelivers what was not acknowledged, so older acknowledgements are
//! not sent on the new connection.
//!
//! # Connection
//!
//! The connection task owns the `EventLoop`. After an error it sleeps for the [`Backoff`]
//! delay (a dead broker is tried at a slowing pace, not in a storm), and on each `CONNACK`
//! subscribes again unless the broker kept our session. A configuration error before the first
//! successful connection (bad credentials, certificate rejected, unknown CA) stops the source
//! with a clear error instead of retrying forever.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::{BoxError, BoxFuture, NodeMetrics, Source, SourceContext};
use rumqttc::{AsyncClient, Event, Incoming, Outgoing, Publish, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::connection::{
    Backoff, MqttError, broker_name, describe, is_configuration_error, mqtt_options, on_connected,
    on_disconnected,
};
use super::options::{BrokerSettings, Qos};
use super::payload::{DecoderSettings, PayloadDecoder, RejectedRows};

/// Index of the `rejected` side output among the source's side outputs.
pub const REJECTED_PORT: usize = 0;

/// How many rejected messages are logged one by one before the log goes quiet.
const LOGGED_REJECTS: u64 = 10;

/// The checked, ready-to-run source.
#[derive(Clone, Debug)]
pub struct MqttSource {
    pub(crate) broker: BrokerSettings,
    pub(crate) topics: Vec<String>,
    pub(crate) qos: Qos,
    pub(crate) decoder: DecoderSettings,
    pub(crate) batch_rows: usize,
    pub(crate) linger: Duration,
    pub(crate) dead_letter_topic: Option<String>,
}

/// What the connection task tells the source loop.
enum Polled {
    /// A new connection (its generation number).
    Connected(u64),
    /// A message, with the generation of the connection that brought it.
    Message(u64, Publish),
    /// The DISCONNECT we asked for went out.
    DisconnectSent,
    /// A configuration error before the first connection: stop.
    Fatal(MqttError),
}

impl Source for MqttSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move { self.run_loop(ctx).await.map_err(BoxError::from) })
    }
}

impl MqttSource {
    async fn run_loop(self, ctx: SourceContext) -> Result<(), MqttError> {
        let manual_acks = self.qos == Qos::AtLeastOnce;
        let options = mqtt_options(&self.broker, manual_acks)?;
        // Room for every acknowledgement of two flushes plus dead letters and subscriptions,
        // so `try_ack` normally finds space (see `ack_all` for when it does not).
        let capacity = 2 * usize::from(self.broker.inflight) + 64;
        let (client, eventloop) = AsyncClient::new(options, capacity);
        let (events, mut receiver) = mpsc::channel(self.batch_rows.clamp(16, 4096));
        let connection = tokio::spawn(connection_task(
            eventloop,
            client.clone(),
            self.broker.clone(),
            self.topics.clone(),
            self.qos.to_rumqttc(),
            ctx.metrics().clone(),
            events,
        ));
        let broker = broker_name(&self.broker);
        info!(source = %ctx.name(), broker = %broker, topics = ?self.topics, "Connecting to MQTT broker");

        let mut state = LoopState {
            decoder: PayloadDecoder::new(self.decoder.clone()),
            rejected: RejectedRows::default(),
            unacked: Vec::new(),
            generation: 0,
            rejects_logged: 0,
        };
        let mut backlog: VecDeque<Polled> = VecDeque::new();
        let mut shutdown = ctx.shutdown();
        let mut deadline: Option<Instant> = None;
        let inflight = usize::from(self.broker.inflight);
        let result = loop {
            let step = match backlog.pop_front() {
                Some(polled) => Some(polled),
                None => {
                    tokio::select! {
                        biased;
                        _ = shutdown.requested() => break Ok(()),
                        _ = sleep_until(deadline), if deadline.is_some() => None,
                        polled = receiver.recv() => match polled {
                            Some(polled) => Some(polled),
                            None => break Err(MqttError::Internal("the MQTT connection task ended".into())),
                        },
                    }
                }
            };
            match step {
                None => {
                    // Linger passed: hand over what we have.
                    if self
                        .flush(&ctx, &client, &mut state, &mut receiver, &mut backlog)
                        .await
                        .is_err()
                    {
                        break Ok(());
                    }
                    deadline = None;
                }
                Some(Polled::Fatal(error)) => break Err(error),
                Some(Polled::Connected(generation)) => state.generation = generation,
                Some(Polled::DisconnectSent) => {}
                Some(Polled::Message(generation, publish)) => {
                    self.take(&ctx, &client, &mut state, generation, publish);
                    // QoS 1: a broker sends only so many unacknowledged messages (mosquitto's
                    // default is 20), then waits for our acknowledgements. When nothing more
                    // is waiting to be read, hand the batch over now instead of lingering.
                    let waiting =
                        !state.unacked.is_empty() && receiver.is_empty() && backlog.is_empty();
                    let full = state.decoder.pending_rows() >= self.batch_rows
                        || state.unacked.len() >= inflight
                        || state.rejected.len() >= self.batch_rows
                        || waiting;
                    if full {
                        if self
                            .flush(&ctx, &client, &mut state, &mut receiver, &mut backlog)
                            .await
                            .is_err()
                        {
                            break Ok(());
                        }
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(Instant::now() + self.linger);
                    }
                }
            }
        };
        if result.is_ok() {
            // Shutdown: what was decoded still goes in (and is acknowledged) if the dataflow
            // takes it; then leave the broker politely so it keeps our session.
            let _ = self
                .flush(&ctx, &client, &mut state, &mut receiver, &mut backlog)
                .await;
            let connected = ctx.metrics().snapshot().values.get("connected") == Some(&1);
            if connected && client.try_disconnect().is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(polled) = receiver.recv().await {
                        if matches!(polled, Polled::DisconnectSent) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        connection.abort();
        ctx.metrics().set_value("connected", 0);
        result
    }

    /// Decodes one message into the pending rows or rejects.
    fn take(
        &self,
        ctx: &SourceContext,
        client: &AsyncClient,
        state: &mut LoopState,
        generation: u64,
        publish: Publish,
    ) {
        let arrival = now_ms();
        ctx.metrics().add_rows_in(1);
        match state
            .decoder
            .decode(&publish.topic, &publish.payload, arrival)
        {
            Ok(_rows) => {}
            Err(reject) => {
                ctx.metrics().count_dropped(reject.reason, 1);
                state.rejects_logged += 1;
                if state.rejects_logged <= LOGGED_REJECTS {
                    warn!(source = %ctx.name(), topic = %publish.topic, reason = reject.reason, "Rejected an MQTT message: {}", reject.detail);
                } else {
                    debug!(source = %ctx.name(), topic = %publish.topic, reason = reject.reason, "Rejected an MQTT message: {}", reject.detail);
                }
                if ctx.side_output_wired(REJECTED_PORT) {
                    state
                        .rejected
                        .push(arrival, &publish.topic, &reject, &publish.payload);
                }
                if let Some(topic) = &self.dead_letter_topic
                    && client
                        .try_publish(
                            topic.clone(),
                            QoS::AtMostOnce,
                            false,
                            publish.payload.clone(),
                        )
                        .is_err()
                {
                    ctx.metrics().add_value("dead_letters_dropped", 1);
                }
            }
        }
        if publish.qos != QoS::AtMostOnce {
            state.unacked.push((generation, publish));
        }
    }

    /// Sends the pending rows and rejects into the dataflow, then acknowledges their messages.
    ///
    /// # Errors
    /// The dataflow no longer takes rows (the pipeline is ending).
    async fn flush(
        &self,
        ctx: &SourceContext,
        client: &AsyncClient,
        state: &mut LoopState,
        receiver: &mut mpsc::Receiver<Polled>,
        backlog: &mut VecDeque<Polled>,
    ) -> Result<(), edgeflow_engine::Stopped> {
        if let Some(rows) = state.decoder.finish() {
            ctx.send(rows).await?;
        }
        if let Some(rows) = state.rejected.finish() {
            ctx.send_side(REJECTED_PORT, rows).await?;
        }
        let current = state.generation;
        let unacked = std::mem::take(&mut state.unacked);
        for (generation, publish) in unacked {
            // A message from an earlier connection is redelivered by the broker on this one;
            // acknowledging its old packet id here could acknowledge a different message.
            if generation == current {
                ack(client, &publish, receiver, backlog).await;
            }
        }
        Ok(())
    }
}

struct LoopState {
    decoder: PayloadDecoder,
    rejected: RejectedRows,
    unacked: Vec<(u64, Publish)>,
    generation: u64,
    rejects_logged: u64,
}

/// Queues the PUBACK of `publish`. When the request channel is full, keeps draining the
/// connection task's events into `backlog` meanwhile, so the task (which may be waiting to
/// hand us an event) can get back to sending requests: no deadlock.
async fn ack(
    client: &AsyncClient,
    publish: &Publish,
    receiver: &mut mpsc::Receiver<Polled>,
    backlog: &mut VecDeque<Polled>,
) {
    loop {
        match client.try_ack(publish) {
            Ok(()) => return,
            Err(_) => {
                tokio::select! {
                    polled = receiver.recv() => match polled {
                        Some(polled) => backlog.push_back(polled),
                        // The connection is gone for good; the broker redelivers.
                        None => return,
                    },
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls the event loop forever: reports messages, reconnects with backoff, resubscribes.
async fn connection_task(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    broker: BrokerSettings,
    topics: Vec<String>,
    qos: QoS,
    metrics: Arc<NodeMetrics>,
    events: mpsc::Sender<Polled>,
) {
    let (min, max) = broker.reconnect;
    let mut backoff = Backoff::new(min, max);
    let name = broker_name(&broker);
    let mut generation = 0u64;
    let mut connected = false;
    let mut ever_connected = false;
    let mut failures = 0u64;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                generation += 1;
                on_connected(&metrics, !ever_connected);
                if ever_connected {
                    info!(broker = %name, session_present = ack.session_present, "Reconnected to MQTT broker");
                } else {
                    info!(broker = %name, session_present = ack.session_present, "Connected to MQTT broker");
                }
                if !ack.session_present {
                    if broker.persistent && ever_connected {
                        warn!(broker = %name, "The broker lost our session; subscribing again (messages sent meanwhile may be lost)");
                        metrics.add_value("session_lost", 1);
                    }
                    let filters = topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), qos));
                    // `try_` because awaiting here, inside the poll loop, could wait for
                    // the very loop that drains the channel.
                    if let Err(error) = client.try_subscribe_many(filters) {
                        warn!(broker = %name, "Could not queue the subscription: {error}");
                    }
                }
                connected = true;
                ever_connected = true;
                failures = 0;
                backoff.reset();
                if events.send(Polled::Connected(generation)).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                if events
                    .send(Polled::Message(generation, publish))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count();
                if refused > 0 {
                    warn!(broker = %name, refused, "The broker refused {refused} of our topic filters (not authorized?)");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = events.send(Polled::DisconnectSent).await;
                return;
            }
            Ok(_) => {}
            Err(error) => {
                on_disconnected(&metrics, connected);
                let reason = describe(&error);
                if !ever_connected && is_configuration_error(&error) {
                    let _ = events
                        .send(Polled::Fatal(MqttError::Connect {
                            broker: name.clone(),
                            reason,
                        }))
                        .await;
                    return;
                }
                let delay = backoff.next_delay();
                failures += 1;
                if connected {
                    warn!(broker = %name, "Lost the MQTT connection: {reason}; reconnecting in {delay:?}");
                } else if failures == 1 || failures.is_multiple_of(10) {
                    // The first failure of a streak, then every tenth: a broker that stays
                    // away is visible in the log without flooding it.
                    warn!(broker = %name, attempts = failures, "Cannot connect to the MQTT broker: {reason}; next attempt in {delay:?}");
                } else {
                    debug!(broker = %name, attempts = failures, "Cannot connect to the MQTT broker: {reason}; next attempt in {delay:?}");
                }
                connected = false;
                tokio::time::sleep(delay).await;
            }
        }
    }
}
