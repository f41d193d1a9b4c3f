//! Mutual TLS for the collector: a rustls server (ring provider) that requires a client
//! certificate signed by the client CA, and the accept loop that feeds tonic.
//!
//! The configuration is what `tonic::transport::ServerTlsConfig::new().identity(..)
//! .client_ca_root(..)` builds (client certificate required, ALPN `h2`), but the TLS
//! handshakes run here rather than inside tonic, because tonic drops a failed handshake with
//! only a debug line: here each refused client is logged at warn with its address and the
//! reason (no certificate, unknown CA, expired certificate) and counted by reason.
//! Accepted connections are `tokio_rustls` streams, so tonic's `Request::peer_certs` works.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::stats::CollectorStats;
use crate::error::io_reason;
use crate::mqtt::tls::install_crypto_provider;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The collector's certificate files.
#[derive(Clone, Debug)]
pub struct CollectorTls {
    /// The collector's certificate chain (PEM).
    pub cert: PathBuf,
    /// The collector's private key (PEM).
    pub key: PathBuf,
    /// The CA that signs gateway certificates (PEM); clients must present one it signed.
    pub client_ca: PathBuf,
}

/// A TLS file that cannot be used.
#[derive(Debug, Error)]
pub enum CollectorTlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} '{path}': {reason}")]
    Read {
        /// Which file (`collector certificate`, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("the {what} '{path}' holds no PEM {expected} block")]
    Empty {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The PEM label expected.
        expected: &'static str,
    },
    /// rustls refused the combination (a key that does not match the certificate, ...).
    #[error("cannot use the collector's TLS files: {0}")]
    Config(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, CollectorTlsError> {
    std::fs::read(path).map_err(|e| CollectorTlsError::Read {
        what,
        path: path.to_path_buf(),
        reason: io_reason(&e),
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CollectorTlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&read(what, path)?)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CollectorTlsError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

impl CollectorTls {
    /// The rustls configuration: the collector's identity, client certificates required and
    /// checked against `client_ca` (signature, validity period), ALPN `h2` for gRPC.
    ///
    /// # Errors
    /// A file that cannot be read or used.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, CollectorTlsError> {
        install_crypto_provider();
        let chain = certificates("collector certificate", &self.cert)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read("collector key", &self.key)?).map_err(|_| {
                CollectorTlsError::Empty {
                    what: "collector key",
                    path: self.key.clone(),
                    expected: "PRIVATE KEY",
                }
            })?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots
            .add_parsable_certificates(certificates("client CA certificate", &self.client_ca)?);
        if added == 0 {
            return Err(CollectorTlsError::Empty {
                what: "client CA certificate",
                path: self.client_ca.clone(),
                expected: "CERTIFICATE",
            });
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| CollectorTlsError::Config(e.to_string()))?;
        let mut config = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| CollectorTlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Why a handshake failed, as a short label for logs and counters.
pub fn refusal_reason(error: &std::io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return "handshake failed";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no client certificate",
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired certificate",
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate not valid yet",
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "certificate from an unknown CA",
        rustls::Error::InvalidCertificate(CertificateError::Revoked) => "revoked certificate",
        rustls::Error::InvalidCertificate(_) => "invalid certificate",
        rustls::Error::NoApplicationProtocol => "client does not speak HTTP/2",
        _ => "handshake failed",
    }
}

/// Accepts TCP connections on `listener`, runs each TLS handshake in its own task (so a slow
/// client does not hold up others), logs and counts refusals, and hands accepted streams to
/// the returned channel for tonic.
pub fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stats: Arc<CollectorStats>,
) -> mpsc::Receiver<TlsStream<TcpStream>> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Per-connection errors (reset before accept, out of descriptors) are
                    // transient: back off briefly and go on.
                    tracing::warn!(reason = %io_reason(&error), "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if sender.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(stream).await;
                    }
                    // A connection closed before any TLS record (a port probe, a load
                    // balancer's health check) is not a refused client.
                    Ok(Err(error)) if closed_before_handshake(&error) => {
                        tracing::debug!(%peer, "Connection closed before the TLS handshake");
                    }
                    Ok(Err(error)) => refuse(&stats, peer, refusal_reason(&error), &error),
                    Err(_) => refuse(
                        &stats,
                        peer,
                        "handshake timed out",
                        &std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ),
                }
            });
        }
    });
    receiver
}

/// True for a connection that ended (EOF, reset) without a TLS error: nothing was refused.
fn closed_before_handshake(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    let tls_error = error
        .get_ref()
        .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some());
    !tls_error
        && matches!(
            error.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        )
}

fn refuse(stats: &CollectorStats, peer: SocketAddr, reason: &'static str, error: &std::io::Error) {
    let total = stats.count_refusal(reason);
    tracing::warn!(%peer, reason, detail = %error, refused_so_far = total,
        "Refused a TLS connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_named() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            refusal_reason(&io(rustls::Error::NoCertificatesPresented)),
            "no client certificate"
        );
        assert_eq!(
            refusal_reason(&io(rustls::Error::InvalidCertificate(
                CertificateError::Expired
            ))),
            "expired certificate"
        );
        assert_eq!(
            refusal_reason(&io(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            "certificate from an unknown CA"
        );
        assert_eq!(
            refusal_reason(&std::io::Error::other("eof")),
            "handshake failed"
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(closed_before_handshake(&eof));
        assert!(!closed_before_handshake(&io(
            rustls::Error::NoCertificatesPresented
        )));
    }

    #[test]
    fn missing_files_are_named() {
        let tls = CollectorTls {
            cert: "/nonexistent/collector.pem".into(),
            key: "/nonexistent/collector-key.pem".into(),
            client_ca: "/nonexistent/ca.pem".into(),
        };
        let error = tls.server_config().unwrap_err().to_string();
        assert!(
            error.contains("collector certificate '/nonexistent/collector.pem'"),
            "{error}"
        );
    }
}
