//! TLS pieces every connector shares: reading PEM certificates and keys with errors that name
//! the file, a rustls client configuration on the `ring` provider, and installing that
//! provider once for the process.
//!
//! rumqttc is built with `use-rustls-no-provider`, so the process-wide rustls crypto provider
//! must be installed before the first TLS configuration is made; [`install_crypto_provider`]
//! does it once (ring everywhere, which also cross-builds for ARM gateways). Connectors read
//! their files when the pipeline is built, so a missing or unreadable file stops the start
//! with a message naming it, instead of failing on every reconnect.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;

/// Where the system's CA roots are on Debian-like systems (used when no CA file is given).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS file that could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS {what} '{path}': {reason}")]
    Read {
        /// `CA certificate`, `client certificate`, `client key`, `server key`, …
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// A file holds no usable PEM item of the kind needed.
    #[error("TLS {what} '{path}' holds no PEM {expected}")]
    Empty {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for (`CERTIFICATE` or `PRIVATE KEY`).
        expected: &'static str,
    },
    /// rustls refused the certificates or key.
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// Installs rustls's `ring` crypto provider as the process default, once. Harmless when
/// another part of the process installed one first.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed, which is what we need anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason: crate::error::io_reason(&error),
    })
}

pub(crate) fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub(crate) fn private_key(
    what: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Empty {
        what,
        path: path.to_path_buf(),
        expected: "PRIVATE KEY",
    })
}

/// A rustls client configuration on the `ring` provider that trusts the certificates in
/// `ca` (`None`: the system roots) and, with `identity`, shows that client certificate and key.
///
/// # Errors
/// A file that cannot be read or holds nothing usable, or a key that does not fit.
pub(crate) fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    install_crypto_provider();
    let ca_path = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
    let mut roots = RootCertStore::empty();
    let (added, _ignored) =
        roots.add_parsable_certificates(certificates("CA certificate", ca_path)?);
    if added == 0 {
        return Err(TlsError::Empty {
            what: "CA certificate",
            path: ca_path.to_path_buf(),
            expected: "CERTIFICATE",
        });
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Rustls(error.to_string()))?
            .with_root_certificates(roots);
    Ok(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificates("client certificate", cert)?,
                private_key("client key", key)?,
            )
            .map_err(|error| {
                TlsError::Rustls(format!(
                    "client certificate '{}' and key '{}': {error}",
                    cert.display(),
                    key.display()
                ))
            })?,
        None => builder.with_no_client_auth(),
    })
}
