//! TLS for `mqtts://`: the rustls client configuration of the `tls` options, built by the
//! shared [`crate::tls`] module (PEM files, the `ring` provider).

use std::sync::Arc;

use rustls::ClientConfig;

pub use crate::tls::{SYSTEM_ROOTS, TlsError, install_crypto_provider};

use super::options::TlsOptions;

/// The rustls client configuration for `tls`.
///
/// # Errors
/// A file that cannot be read or holds nothing usable, or a key that does not fit.
pub fn client_config(tls: &TlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let identity = tls.cert.as_deref().zip(tls.key.as_deref());
    crate::tls::client_config(tls.ca.as_deref(), identity).map(Arc::new)
}
