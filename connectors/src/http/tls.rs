//! TLS for the `http` source: a rustls server configuration from PEM files, on the `ring`
//! provider (installed once, as for MQTT), with client certificates checked against
//! `tls.client_ca` for mutual TLS.
//!
//! With `client_ca` and no `tokens`, a client certificate is required: a client without one
//! fails the handshake. With both, a certificate is optional and a client without one must
//! show a bearer token instead.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;

use super::options::ServerTlsOptions;
use crate::tls::{TlsError, certificates, install_crypto_provider, read};

/// The rustls server configuration for `tls`; `certificate_optional` lets clients without
/// a certificate through the handshake (they must then show a token).
///
/// # Errors
/// A file that cannot be read or holds nothing usable, or a key that does not fit.
pub fn server_config(
    tls: &ServerTlsOptions,
    certificate_optional: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let chain = certificates("server certificate", &tls.cert)?;
    let key_pem = read("server key", &tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Empty {
        what: "server key",
        path: tls.key.clone(),
        expected: "PRIVATE KEY",
    })?;
    let builder = ServerConfig::builder();
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let (added, _ignored) =
                roots.add_parsable_certificates(certificates("client CA certificate", ca)?);
            if added == 0 {
                return Err(TlsError::Empty {
                    what: "client CA certificate",
                    path: ca.clone(),
                    expected: "CERTIFICATE",
                });
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if certificate_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|error| {
                TlsError::Rustls(format!("client CA '{}': {error}", ca.display()))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| {
        TlsError::Rustls(format!(
            "server certificate '{}' and key '{}': {error}",
            tls.cert.display(),
            tls.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
