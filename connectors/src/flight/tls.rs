//! The `flight` sink's connection to the collector: TCP, then (for `https://`) a rustls
//! handshake on the `ring` provider with the gateway's client certificate, then tonic's
//! HTTP/2 channel on top.
//!
//! The TCP connect and the TLS handshake run here, in a connector handed to tonic, rather than
//! inside tonic: tonic reports every failure as `transport error`, while here each one becomes
//! a [`LinkError`] that names the endpoint and says what failed (connection refused, unknown
//! CA, certificate expired, name mismatch), which is what an operator needs in the log.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use super::options::{Endpoint, TlsFiles};
use crate::error::io_reason;
use crate::tls::TlsError;

/// Why the collector could not be reached or talked to.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The TCP connection failed (refused, unreachable, timed out).
    #[error("cannot connect to Flight collector {endpoint}: {reason}")]
    Connect {
        /// The endpoint URL.
        endpoint: String,
        /// Why, in words.
        reason: String,
    },
    /// The TLS handshake failed (certificate not trusted, expired, wrong name, client
    /// certificate refused).
    #[error("TLS handshake with Flight collector {endpoint} failed: {reason}")]
    Tls {
        /// The endpoint URL.
        endpoint: String,
        /// rustls's reason.
        reason: String,
    },
    /// The `DoPut` of a segment failed.
    #[error("sending segment {segment} to Flight collector {endpoint} failed: {reason}")]
    Send {
        /// The endpoint URL.
        endpoint: String,
        /// The segment id.
        segment: u64,
        /// Why, in words (the gRPC status and its cause).
        reason: String,
    },
}

/// The rustls client configuration (ALPN `h2`) for `files`.
///
/// # Errors
/// A file that cannot be read or holds nothing usable, or a key that does not fit.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let identity = files
        .identity
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let mut config = crate::tls::client_config(files.ca.as_deref(), identity)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// How to reach the collector: address, TLS, timeouts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    endpoint: Endpoint,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Link {
    /// Reads the TLS files (for `https://`) and prepares the connection settings.
    ///
    /// # Errors
    /// The TLS files cannot be used, or the server name is not valid.
    pub fn new(
        endpoint: Endpoint,
        tls: Option<&TlsFiles>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let tls = match tls {
            Some(files) => {
                let config = client_config(files)?;
                let name = ServerName::try_from(files.server_name.clone()).map_err(|_| {
                    TlsError::Rustls(format!(
                        "'{}' is not a valid server name",
                        files.server_name
                    ))
                })?;
                Some((config, name))
            }
            None => None,
        };
        Ok(Self {
            endpoint,
            tls,
            connect_timeout,
            request_timeout,
        })
    }

    /// The endpoint URL, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint.url
    }

    /// Opens the connection and the HTTP/2 channel over it.
    ///
    /// # Errors
    /// A [`LinkError`] naming the endpoint and what failed.
    pub async fn connect(&self) -> Result<Channel, LinkError> {
        let url = self.endpoint.url.clone();
        let bad_url = |error: tonic::transport::Error| LinkError::Connect {
            endpoint: url.clone(),
            reason: error_chain(&error),
        };
        // tonic refuses an https:// URI without its own TLS; the connector below does the
        // TLS, so tonic gets the address as http:// and the real URL as the origin (the
        // `:scheme` and `:authority` of each request).
        let authority = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(&url);
        let origin =
            url.parse::<tonic::codegen::http::Uri>()
                .map_err(|error| LinkError::Connect {
                    endpoint: url.clone(),
                    reason: error.to_string(),
                })?;
        let tonic_endpoint = TonicEndpoint::from_shared(format!("http://{authority}"))
            .map_err(bad_url)?
            .origin(origin)
            .timeout(self.request_timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        tonic_endpoint
            .connect_with_connector(Connector(self.clone()))
            .await
            .map_err(|error| {
                // Our own LinkError is inside tonic's transport error: surface it as it is.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
                while let Some(current) = source {
                    if let Some(link) = current.downcast_ref::<LinkError>() {
                        return clone_link_error(link);
                    }
                    source = current.source();
                }
                LinkError::Connect {
                    endpoint: url.clone(),
                    reason: error_chain(&error),
                }
            })
    }

    /// TCP connect, then the TLS handshake when the endpoint is `https://`.
    async fn open(&self) -> Result<Stream, LinkError> {
        let address = (self.endpoint.host.as_str(), self.endpoint.port);
        let tcp =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(error)) => {
                    return Err(LinkError::Connect {
                        endpoint: self.endpoint.url.clone(),
                        reason: io_reason(&error),
                    });
                }
                Err(_) => {
                    return Err(LinkError::Connect {
                        endpoint: self.endpoint.url.clone(),
                        reason: format!("no connection within {:?}", self.connect_timeout),
                    });
                }
            };
        // Segments are written whole; don't hold small frames back.
        let _ = tcp.set_nodelay(true);
        let Some((config, name)) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let handshake = TlsConnector::from(config.clone()).connect(name.clone(), tcp);
        match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
            Ok(Err(error)) => Err(LinkError::Tls {
                endpoint: self.endpoint.url.clone(),
                reason: tls_reason(&error),
            }),
            Err(_) => Err(LinkError::Tls {
                endpoint: self.endpoint.url.clone(),
                reason: format!("no handshake within {:?}", self.connect_timeout),
            }),
        }
    }
}

fn clone_link_error(error: &LinkError) -> LinkError {
    match error {
        LinkError::Connect { endpoint, reason } => LinkError::Connect {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
        },
        LinkError::Tls { endpoint, reason } => LinkError::Tls {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
        },
        LinkError::Send {
            endpoint,
            segment,
            reason,
        } => LinkError::Send {
            endpoint: endpoint.clone(),
            segment: *segment,
            reason: reason.clone(),
        },
    }
}

/// A rustls failure in words: the rustls error itself when the IO error wraps one.
fn tls_reason(error: &std::io::Error) -> String {
    match error.get_ref() {
        Some(inner) => inner.to_string(),
        None => io_reason(error),
    }
}

/// An error and all its causes, joined with `: ` (skipping repeats).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(current) = source {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

/// Opens connections for tonic (the URI is the endpoint's; [`Link`] knows where to go).
#[derive(Clone)]
struct Connector(Link);

impl tower::Service<tonic::codegen::http::Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = LinkError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, LinkError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), LinkError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::codegen::http::Uri) -> Self::Future {
        let link = self.0.clone();
        Box::pin(async move { link.open().await.map(TokioIo::new) })
    }
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
