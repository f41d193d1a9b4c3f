//! Errors of the connectors, by category, with messages that quote the path at fault.
//!
//! Build-time errors (a missing input file, an output folder that cannot be written) and
//! run-time errors (a read or write that failed) are one-line messages such as
//! `cannot open input file 'x.csv': No such file or directory`, so the CLI can print them as
//! they are. [`ConnectorError::kind`] tells the category apart for callers that act on it.

use std::io;
use std::path::Path;

use edgeflow_engine::OptionError;
use thiserror::Error;

/// What went wrong in a connector.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// An input file could not be opened.
    #[error("cannot open input file '{path}': {reason}")]
    OpenInput {
        /// The file, as the user wrote it or as the glob expanded.
        path: String,
        /// Why, in words (for example `No such file or directory`).
        reason: String,
    },
    /// A glob pattern matched no file.
    #[error("no input file matches '{pattern}'")]
    NoMatch {
        /// The pattern as written.
        pattern: String,
    },
    /// An input file could be opened but not read.
    #[error("cannot read input file '{path}': {reason}")]
    ReadInput {
        /// The file.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// The output folder could not be created.
    #[error("cannot create output folder '{path}': {reason}")]
    CreateOutput {
        /// The folder.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// The output folder exists but files cannot be created in it.
    #[error("cannot write to output folder '{path}': {reason}")]
    OutputNotWritable {
        /// The folder.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// Writing or committing an output file failed (for example a full disk).
    #[error("cannot write output file '{path}': {reason}")]
    WriteOutput {
        /// The file.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// Writing to standard output failed for a reason other than a closed pipe.
    #[error("cannot write to standard output: {0}")]
    Stdout(String),
    /// `build()` was called on options that do not pass their own checks.
    #[error("{}", join_option_errors(.0))]
    Options(Vec<OptionError>),
    /// Something that should never happen.
    #[error("internal error in a connector: {0}. This is a bug: please report it")]
    Internal(String),
}

/// The category of a [`ConnectorError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The options are wrong: fix the query file.
    Config,
    /// Reading input failed: check the input files.
    Input,
    /// Writing output failed: check the output folder or disk.
    Output,
    /// A bug.
    Internal,
}

impl ConnectorError {
    /// The category, for callers that react differently to each.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Options(_) => ErrorKind::Config,
            Self::OpenInput { .. } | Self::NoMatch { .. } | Self::ReadInput { .. } => {
                ErrorKind::Input
            }
            Self::CreateOutput { .. }
            | Self::OutputNotWritable { .. }
            | Self::WriteOutput { .. }
            | Self::Stdout(_) => ErrorKind::Output,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// [`Self::OpenInput`] for `path` from an IO error.
    pub fn open_input(path: &Path, error: &io::Error) -> Self {
        Self::OpenInput {
            path: path.display().to_string(),
            reason: io_reason(error),
        }
    }

    /// [`Self::ReadInput`] for `path` with any displayable reason.
    pub fn read_input(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::ReadInput {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// [`Self::WriteOutput`] for `path` with any displayable reason.
    pub fn write_output(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::WriteOutput {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

fn join_option_errors(errors: &[OptionError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// An IO error in words, without the `(os error N)` suffix: `No such file or directory`.
pub fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(cut) if text.ends_with(')') => text[..cut].to_string(),
        _ => text,
    }
}

/// A Parquet error in words: an IO error inside it as [`io_reason`] gives it
/// (`No space left on device`), anything else as the parquet crate says it.
pub fn parquet_reason(error: &::parquet::errors::ParquetError) -> String {
    use ::parquet::errors::ParquetError;
    match error {
        ParquetError::External(inner) => match inner.downcast_ref::<io::Error>() {
            Some(io_error) => io_reason(io_error),
            None => inner.to_string(),
        },
        ParquetError::General(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reasons_drop_the_os_error_number() {
        let error = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&error), "No such file or directory");
        let error = ConnectorError::open_input(Path::new("x.csv"), &error);
        assert_eq!(
            error.to_string(),
            "cannot open input file 'x.csv': No such file or directory"
        );
        assert_eq!(error.kind(), ErrorKind::Input);
        let custom = io::Error::other("disk on fire");
        assert_eq!(io_reason(&custom), "disk on fire");
    }

    #[test]
    fn parquet_errors_say_what_the_disk_said() {
        let full = ::parquet::errors::ParquetError::from(io::Error::from_raw_os_error(28));
        assert_eq!(parquet_reason(&full), "No space left on device");
        let general = ::parquet::errors::ParquetError::General("bad footer".into());
        assert_eq!(parquet_reason(&general), "bad footer");
    }

    #[test]
    fn option_errors_join_on_one_line() {
        let error = ConnectorError::Options(vec![
            OptionError::at("rate", "bad"),
            OptionError::at("devices", "zero"),
        ]);
        assert_eq!(error.to_string(), "rate: bad; devices: zero");
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}
