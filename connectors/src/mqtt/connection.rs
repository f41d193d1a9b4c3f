//! What the `mqtt` source and sink share about the connection: rumqttc options from the
//! checked settings, the reconnect backoff, errors in words, and the connection metrics.
//!
//! rumqttc's `EventLoop::poll` reconnects on the next call after an error, at once; without
//! a delay a dead broker gets a reconnect storm. [`Backoff`] gives the delay: it starts at
//! `reconnect_min`, doubles after each failed attempt up to `reconnect_max`, is drawn with
//! "equal jitter" (between half and all of the current step, so many gateways restarted
//! together spread out), and starts over after a successful `CONNACK`.
//!
//! Metrics (in the node's values): `connected` (1 or 0), `connects` (successful
//! connections), `reconnects` (connections after the first), `connect_failures`, and
//! `session_lost` (the broker did not have our session and we subscribed again).

use std::time::Duration;

use edgeflow_engine::NodeMetrics;
use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, TlsConfiguration, Transport};
use thiserror::Error;

use super::options::BrokerSettings;
use super::tls::{TlsError, client_config};

/// Reconnect delays: exponential, capped, with jitter, reset after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Starts at `min`, never above `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The delay before the next attempt (between half and all of the current step), and
    /// doubles the step for the attempt after.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let jitter: f64 = rand::random::<f64>();
        step.mul_f64(0.5 + 0.5 * jitter)
    }

    /// The current step (the upper bound of the next delay).
    pub fn step(&self) -> Duration {
        self.step
    }

    /// Back to `min`, after a successful connection.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// A failure that ends an MQTT source or sink (as opposed to a disconnect it rides out).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The broker could not be reached or refused us before the first connection succeeded
    /// for a reason retrying will not fix (bad credentials, certificate rejected).
    #[error("cannot connect to MQTT broker {broker}: {reason}")]
    Connect {
        /// `host:port`.
        broker: String,
        /// Why, in words.
        reason: String,
    },
    /// At the end of input, messages were still unacknowledged when `drain_timeout` passed.
    #[error(
        "{count} message(s) to MQTT broker {broker} were not acknowledged within drain_timeout ({timeout:?}); they are lost"
    )]
    Undelivered {
        /// `host:port`.
        broker: String,
        /// Messages left in the outbox.
        count: usize,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// A row could not be turned into JSON: a bug.
    #[error("internal error in the mqtt sink: {0}. This is a bug: please report it")]
    Internal(String),
}

/// rumqttc options for `settings`, with TLS set up when the URL is `mqtts://`.
///
/// # Errors
/// The TLS files cannot be used.
pub fn mqtt_options(
    settings: &BrokerSettings,
    manual_acks: bool,
) -> Result<MqttOptions, MqttError> {
    let address = &settings.address;
    let mut options = MqttOptions::new(
        settings.client_id.clone(),
        address.host.clone(),
        address.port,
    );
    options
        .set_keep_alive(settings.keep_alive)
        .set_clean_session(!settings.persistent)
        .set_inflight(settings.inflight)
        .set_max_packet_size(settings.max_packet_size, settings.max_packet_size)
        .set_manual_acks(manual_acks);
    if let Some((user, password)) = &settings.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if address.tls {
        let mut config = (*client_config(&settings.tls)?).clone();
        config.alpn_protocols.clear();
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            std::sync::Arc::new(config),
        )));
    }
    Ok(options)
}

/// `host:port` for messages.
pub fn broker_name(settings: &BrokerSettings) -> String {
    let address = &settings.address;
    let scheme = if address.tls { "mqtts" } else { "mqtt" };
    if address.host.contains(':') {
        format!("{scheme}://[{}]:{}", address.host, address.port)
    } else {
        format!("{scheme}://{}:{}", address.host, address.port)
    }
}

/// A connection error in words, with a hint where one helps.
pub fn describe(error: &ConnectionError) -> String {
    if let ConnectionError::ConnectionRefused(code) = error {
        return match code {
            ConnectReturnCode::BadUserNamePassword => {
                "the broker refused the user name or password".into()
            }
            ConnectReturnCode::NotAuthorized => {
                "the broker says this client is not authorized".into()
            }
            ConnectReturnCode::BadClientId => {
                "the broker refused the client id (empty or already taken?)".into()
            }
            ConnectReturnCode::RefusedProtocolVersion => {
                "the broker does not speak MQTT 3.1.1".into()
            }
            ConnectReturnCode::ServiceUnavailable => "the broker is unavailable".into(),
            ConnectReturnCode::Success => "connected".into(),
        };
    }
    // TLS problems come as rustls errors, directly or inside I/O and protocol errors.
    let text = error.to_string();
    let has = |needle: &str| text.contains(needle);
    if has("UnknownIssuer") || has("BadSignature") {
        format!(
            "TLS: the broker's certificate is not signed by the configured CA (tls.ca) ({text})"
        )
    } else if has("NotValidForName") {
        format!("TLS: the broker's certificate is not valid for this host name ({text})")
    } else if has("CertificateRequired") {
        format!("TLS: the broker requires a client certificate; set tls.cert and tls.key ({text})")
    } else if has("BadCertificate") || has("UnknownCA") || has("CertificateUnknown") {
        format!(
            "TLS: the broker rejected our client certificate (signed by a CA it does not trust?) ({text})"
        )
    } else if let ConnectionError::Io(io) = error
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        "connection refused (is the broker running?)".into()
    } else if let ConnectionError::NetworkTimeout = error {
        "timed out connecting".into()
    } else {
        text
    }
}

/// Whether an error before the first successful connection means the configuration is
/// wrong (retrying cannot help) rather than the broker being away.
pub fn is_configuration_error(error: &ConnectionError) -> bool {
    if let ConnectionError::ConnectionRefused(code) = error {
        return matches!(
            code,
            ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::BadClientId
                | ConnectReturnCode::RefusedProtocolVersion
        );
    }
    // Certificate problems on either side surface as rustls errors, either directly or
    // wrapped in an I/O error (a TLS 1.3 broker rejects our certificate, or its absence,
    // with an alert after the handshake, while we read the CONNACK).
    let text = format!("{error} {error:?}");
    [
        "InvalidCertificate",
        "invalid peer certificate",
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "UnknownIssuer",
        "HandshakeFailure",
        "NoValidCertInChain",
        "CertificateUnknown",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Records a successful connection.
pub fn on_connected(metrics: &NodeMetrics, first: bool) {
    metrics.set_value("connected", 1);
    metrics.add_value("connects", 1);
    if !first {
        metrics.add_value("reconnects", 1);
    }
}

/// Records a lost or failed connection.
pub fn on_disconnected(metrics: &NodeMetrics, was_connected: bool) {
    metrics.set_value("connected", 0);
    if !was_connected {
        metrics.add_value("connect_failures", 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut steps = Vec::new();
        for _ in 0..8 {
            let step = backoff.step();
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} within [{step:?}/2, {step:?}]"
            );
            steps.push(step.as_millis());
        }
        assert_eq!(steps, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.step(), Duration::from_millis(100));
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut delays = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            delays.insert(backoff.next_delay().as_micros());
        }
        assert!(
            delays.len() > 10,
            "20 draws gave only {} distinct delays",
            delays.len()
        );
    }
}
