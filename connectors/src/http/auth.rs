//! Who is writing: bearer tokens mapped to device ids, or the subject of a client
//! certificate (mutual TLS).
//!
//! A token file holds one `token device_id` pair per line (whitespace between them; blank
//! lines and lines starting with `#` are skipped). Inline tokens are written the other way
//! round, `{ "device-7" = "${DEVICE_7_TOKEN}" }`, so that the secret is a value and can come
//! from the environment (query files interpolate values, never keys).
//!
//! The token table is read once, when the pipeline is built; a missing or malformed file
//! stops the start with its name and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::options::TokenSource;

/// A token file or table that cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token file could not be read.
    #[error("cannot read token file '{path}': {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// A line of the token file is not `token device_id`.
    #[error("token file '{path}' line {line}: expected 'token device_id', got {got} words")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// How many words the line had.
        got: usize,
    },
    /// Two devices share a token, so a write could not be told apart.
    #[error(
        "the same token is given to devices '{first}' and '{second}'; every device needs its own"
    )]
    Shared {
        /// One device.
        first: String,
        /// The other.
        second: String,
    },
    /// A token is empty (often an unset environment variable with an empty default).
    #[error("the token of device '{device}' is empty")]
    Empty {
        /// The device.
        device: String,
    },
    /// No token at all.
    #[error("no tokens are defined (the table or file is empty)")]
    None,
}

/// Token → device id.
#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    devices: HashMap<String, String>,
}

impl TokenTable {
    /// Reads the tokens from their file or inline table.
    ///
    /// # Errors
    /// An unreadable or malformed file, a shared or empty token, or no token at all.
    pub fn load(source: &TokenSource) -> Result<Self, AuthError> {
        let pairs: Vec<(String, String)> = match source {
            TokenSource::Inline(map) => map
                .iter()
                .map(|(device, token)| (token.trim().to_string(), device.clone()))
                .collect(),
            TokenSource::File(path) => read_file(path)?,
        };
        let mut devices: HashMap<String, String> = HashMap::with_capacity(pairs.len());
        for (token, device) in pairs {
            if token.is_empty() {
                return Err(AuthError::Empty { device });
            }
            if let Some(first) = devices.get(&token) {
                return Err(AuthError::Shared {
                    first: first.clone(),
                    second: device,
                });
            }
            devices.insert(token, device);
        }
        if devices.is_empty() {
            return Err(AuthError::None);
        }
        Ok(Self { devices })
    }

    /// The device a token belongs to.
    pub fn device(&self, token: &str) -> Option<&str> {
        self.devices.get(token).map(String::as_str)
    }

    /// How many devices have a token.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

fn read_file(path: &Path) -> Result<Vec<(String, String)>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|error| AuthError::Read {
        path: path.to_path_buf(),
        reason: crate::error::io_reason(&error),
    })?;
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [token, device] => pairs.push(((*token).to_string(), (*device).to_string())),
            other => {
                return Err(AuthError::Line {
                    path: path.to_path_buf(),
                    line: number + 1,
                    got: other.len(),
                });
            }
        }
    }
    Ok(pairs)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The subject common name (CN) of a DER certificate.
pub fn certificate_common_name(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = certificate.subject();
    let common_name = subject.iter_common_name().next()?;
    common_name.as_str().ok().map(str::to_string)
}
