//! The cloud side of Arrow Flight upstream: the server behind `edgeflow collect`.
//!
//! ```text
//! gateway: flight sink ─ spool ─▶ DoPut ["edgeflow", stream, segment] over mutual TLS
//!   ─▶ collector: CN of the client certificate = gateway id
//!   ─▶ out/gateway=<cn>/date=<YYYY-MM-DD>/<stream>-<segment>.parquet  (durable)
//!   ─▶ ledger marker ─▶ ack (SegmentAck JSON in PutResult.app_metadata)
//! ```
//!
//! # When to use which piece
//! - [`serve`] runs the whole collector on a bound listener until a shutdown future fires;
//!   this is what `edgeflow collect` calls.
//! - [`SegmentStore`] is the disk side alone (partitioned Parquet plus ledger), for tests and
//!   tools that read or write the layout without a server.
//! - [`CollectorService`] is the Flight service alone, to mount in another tonic server.
//!
//! # Guarantees
//! A segment is acked only after its Parquet files and its ledger marker are durable
//! (temporary name, `fsync`, rename, `fsync` of the folder). A segment sent again is acked
//! with `duplicate = true` and not written again; a resend after a crash between the files
//! and the marker overwrites the same file names. With the gateway's spool deleting segments
//! only on an ack, every row is stored exactly once. Bad descriptors and undecodable data are
//! answered with `InvalidArgument` naming the problem, logged and counted; failed writes with
//! `Unavailable` (the gateway retries). TLS clients without a valid certificate are refused
//! during the handshake, logged at warn and counted by reason.

pub mod service;
pub mod stats;
pub mod store;
pub mod tls;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use futures::stream;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use service::{CollectorService, GatewayIdentity, sanitise_gateway};
pub use stats::{CollectorStats, StatsSnapshot};
pub use store::{SegmentStore, StoreError};
pub use tls::{CollectorTls, CollectorTlsError};

/// Largest `DoPut` message accepted (tonic's default of 4 MiB is too small for big batches).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How often the summary line is logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// What `edgeflow collect` was asked to do.
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// Output folder for the partitioned Parquet files and the ledger.
    pub out: PathBuf,
    /// Mutual TLS files; `None` serves plain gRPC (`--insecure`, local tests only).
    pub tls: Option<CollectorTls>,
    /// How often to log the summary line.
    pub summary_interval: Duration,
}

/// Why the collector could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] CollectorTlsError),
    /// The output folder cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC server failed.
    #[error("the Flight server failed: {0}")]
    Server(String),
}

/// Runs the collector on `listener` until `shutdown` completes, then lets requests in
/// progress finish and returns the final counters.
///
/// # Errors
/// Unusable TLS files or output folder, or a server failure.
pub async fn serve(
    listener: TcpListener,
    options: CollectorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<StatsSnapshot, CollectorError> {
    let store = Arc::new(SegmentStore::open(&options.out)?);
    let stats = Arc::new(CollectorStats::default());
    let identity = match options.tls {
        Some(_) => GatewayIdentity::ClientCertificate,
        None => GatewayIdentity::InsecureHeader,
    };
    let service = CollectorService::new(Arc::clone(&store), Arc::clone(&stats), identity);
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let summary = tokio::spawn(log_summaries(Arc::clone(&stats), options.summary_interval));
    let router = tonic::transport::Server::builder().add_service(server);
    let result = match &options.tls {
        Some(tls) => {
            let acceptor = TlsAcceptor::from(tls.server_config()?);
            let accepted = tls::accept_loop(listener, acceptor, Arc::clone(&stats));
            let incoming = stream::unfold(accepted, |mut accepted| async move {
                let stream = accepted.recv().await?;
                Some((Ok::<_, std::io::Error>(stream), accepted))
            });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            tracing::warn!(
                "Collector runs WITHOUT TLS (--insecure): any client can write as \
                any gateway. Use this for local tests only."
            );
            let incoming = stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await.map(|(tcp, _)| tcp);
                Some((accepted, listener))
            });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    summary.abort();
    result.map_err(|e| CollectorError::Server(format!("{e:#}")))?;
    Ok(stats.snapshot())
}

/// Logs one summary line per interval: totals and what changed since the last line.
async fn log_summaries(stats: Arc<CollectorStats>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut last = stats.snapshot();
    loop {
        ticker.tick().await;
        let now = stats.snapshot();
        tracing::info!(
            segments = now.segments,
            new_segments = now.segments - last.segments,
            rows = now.rows,
            new_rows = now.rows - last.rows,
            duplicates = now.duplicates,
            mib_received = %format!("{:.1}", now.bytes as f64 / 1_048_576.0),
            rejected = %StatsSnapshot::format_reasons(&now.rejected),
            refused = %StatsSnapshot::format_reasons(&now.refused),
            "Collector summary"
        );
        last = now;
    }
}
