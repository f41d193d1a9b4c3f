//! Errors of the engine, by category: configuration, runtime IO, and internal bugs.

use thiserror::Error;

/// Any error a connector or operator hands the engine.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from building or running a pipeline.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A setting the engine cannot use (for example zero workers).
    #[error("invalid engine setting: {0}")]
    Config(String),
    /// The tokio runtime or the timely workers could not start.
    #[error("could not start the engine: {0}")]
    Startup(String),
    /// A source stopped with an error.
    #[error("source '{node}' failed")]
    Source {
        /// Node name.
        node: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// A sink stopped with an error.
    #[error("sink '{node}' failed")]
    Sink {
        /// Node name.
        node: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// A timely worker panicked.
    #[error("a dataflow worker stopped unexpectedly: {0}. This is a bug: please report it")]
    Worker(String),
    /// Something that should never happen.
    #[error("internal error: {0}. This is a bug: please report it")]
    Internal(String),
}
