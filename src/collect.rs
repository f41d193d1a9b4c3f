//! `edgeflow collect`: the cloud end of Flight upstream. Thin on purpose: parses options,
//! binds the port, and runs [`edgeflow_connectors::flight::collector::serve`] until Ctrl-C
//! or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use edgeflow_connectors::flight::collector::{
    CollectorOptions, CollectorTls, SUMMARY_INTERVAL, StatsSnapshot, serve,
};

/// Options of `edgeflow collect`.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Address to listen on (port 0 picks a free port, logged at start).
    #[arg(long, default_value = "0.0.0.0:50051")]
    pub listen: String,
    /// The collector's certificate chain (PEM), e.g. `certs/collector.pem`.
    #[arg(long, required_unless_present = "insecure")]
    pub tls_cert: Option<PathBuf>,
    /// The collector's private key (PEM), e.g. `certs/collector-key.pem`.
    #[arg(long, required_unless_present = "insecure")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs gateway certificates (PEM), e.g. `certs/ca.pem`. Gateways must
    /// present a certificate it signed; its subject CN is the gateway id.
    #[arg(long, required_unless_present = "insecure")]
    pub client_ca: Option<PathBuf>,
    /// Output folder: `gateway=<id>/date=<YYYY-MM-DD>/<stream>-<segment>.parquet`.
    #[arg(long)]
    pub out: PathBuf,
    /// LOCAL TESTS ONLY: plain gRPC without TLS; the gateway id comes from the
    /// `x-edgeflow-gateway` header, so any client can write as any gateway.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "client_ca"])]
    pub insecure: bool,
    /// Seconds between summary lines in the log.
    #[arg(long, default_value_t = SUMMARY_INTERVAL.as_secs(), hide = true)]
    pub summary_secs: u64,
}

/// Runs `edgeflow collect` until Ctrl-C or SIGTERM.
///
/// # Errors
/// The port cannot be bound, or the TLS files or output folder cannot be used.
pub fn run(args: CollectArgs) -> Result<ExitCode> {
    let tls = match (args.tls_cert, args.tls_key, args.client_ca) {
        (Some(cert), Some(key), Some(client_ca)) => Some(CollectorTls {
            cert,
            key,
            client_ca,
        }),
        _ => None,
    };
    let options = CollectorOptions {
        out: args.out,
        tls,
        summary_interval: Duration::from_secs(args.summary_secs.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edgeflow-collect")
        .build()
        .context("cannot start the IO runtime")?;
    let stats = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on '{}'", args.listen))?;
        let address = listener.local_addr().context("listening address")?;
        tracing::info!(listen = %address, out = %options.out.display(),
            tls = if options.tls.is_some() { "mutual" } else { "NONE (--insecure)" },
            "Collector listening");
        serve(listener, options, shutdown_signal())
            .await
            .context("collector failed")
    })?;
    tracing::info!(
        segments = stats.segments,
        rows = stats.rows,
        duplicates = stats.duplicates,
        mib_received = %format!("{:.1}", stats.bytes as f64 / 1_048_576.0),
        rejected = %StatsSnapshot::format_reasons(&stats.rejected),
        refused = %StatsSnapshot::format_reasons(&stats.refused),
        "Collector stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("Collector stopping: finishing requests in progress");
}
