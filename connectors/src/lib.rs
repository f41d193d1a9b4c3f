//! Sources and sinks: how rows get into and out of an edgeflow pipeline.
//!
//! Each connector lives in its own module with a `*Config` (serde, one `///` per option), the
//! running component (an [`edgeflow_engine::Source`] or [`edgeflow_engine::Sink`]), and its
//! tests. It is made known to query files by one line in [`sources`] or [`sinks`].
//!
//! # Tour
//!
//! | `type`      | kind   | module             | reads or writes                              |
//! |-------------|--------|--------------------|----------------------------------------------|
//! | `file`      | source | [`file`](mod@file) | CSV, JSON lines or Parquet files             |
//! | `gpio`      | source | [`rpi`]            | Raspberry Pi GPIO edges or pulse rates       |
//! | `http`      | source | [`http`]           | JSON readings POSTed by devices (token/mTLS) |
//! | `i2c`       | source | [`rpi`]            | Raspberry Pi I2C sensors (BME280, SHT3x)     |
//! | `modbus`    | source | [`modbus`]         | Modbus TCP registers and coils, polled       |
//! | `mqtt`      | source | [`mqtt`]           | MQTT topics: JSON, CSV or number payloads    |
//! | `simulator` | source | [`simulator`]      | seeded sensor readings, spikes, gaps, jitter |
//! | `flight`    | sink   | [`flight`]         | Arrow Flight upstream, mTLS, local spool     |
//! | `mqtt`      | sink   | [`mqtt`]           | rows as JSON to an MQTT topic template       |
//! | `parquet`   | sink   | [`parquet`]        | date-partitioned, rotating Parquet files     |
//! | `stdout`    | sink   | [`stdout`]         | JSON lines on standard output                |
//!
//! Shared pieces: [`schema_options`] (the `schema`, `event_time`, watermark and `speed`
//! options every source takes), [`timestamps`] (UTC timestamp columns without time-zone
//! parsing), [`tls`] (PEM files and rustls configurations on `ring`) and [`error`] (one-line
//! errors naming the path at fault).
//!
//! ```text
//! query file ─▶ SourceKind::parse ─▶ SourceConfig::{schema, watermark, build}
//!            ─▶ Source::run(SourceContext) ─▶ engine
//! engine     ─▶ SinkKind::parse ─▶ SinkConfig::{check, build}
//!            ─▶ Sink::run(SinkInput) ─▶ disk, stdout
//! ```
//!
//! Sources and sinks do their file IO on tokio's blocking threads (`spawn_blocking` with
//! `send_blocking` / `blocking_recv`), never on the IO runtime's async threads. Connectors do
//! not panic on bad input: bad records are counted by reason and skipped, and failures are
//! returned as errors.
//!
//! # Adding a connector
//! 1. Add `src/<name>.rs` (or `src/<name>/`) with a config implementing [`SourceConfig`] or
//!    [`SinkConfig`] and a `pub const KIND: SourceKind` (or `SinkKind`).
//! 2. Add `<name>::KIND` to the sorted list in [`sources`] or [`sinks`].
#![forbid(missing_docs)]

pub mod error;
pub mod file;
pub mod flight;
pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod parquet;
pub mod rpi;
pub mod schema_options;
pub mod simulator;
pub mod stdout;
pub mod timestamps;
pub mod tls;

use std::fmt::Debug;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{BoxError, OptionError, Sink, Source, WatermarkPolicy};

/// A source's options, checked and ready to build.
pub trait SourceConfig: Debug + Send + Sync {
    /// The schema of every batch the source emits. Its metadata names the event-time column
    /// (see [`edgeflow_engine::schema::schema_with_event_time`]).
    ///
    /// # Errors
    /// Every problem found in the options, each with the path of the option at fault.
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>>;

    /// How the source's watermark follows event time.
    fn watermark(&self) -> WatermarkPolicy;

    /// Creates the running source. May touch the outside world (open files, resolve hosts).
    ///
    /// # Errors
    /// A one-line error naming what could not be opened and why.
    fn build(&self) -> Result<Box<dyn Source>, BoxError>;

    /// Named side outputs with their schemas, such as an MQTT source's `rejected` messages,
    /// in the order the running source addresses them with
    /// [`SourceContext::send_side`](edgeflow_engine::SourceContext::send_side). A query file
    /// reads one as `"<source>.<name>"`. Default: none.
    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        Vec::new()
    }
}

/// A sink's options, checked and ready to build.
pub trait SinkConfig: Debug + Send + Sync {
    /// Checks the options against the schema of the rows the sink will receive, without
    /// touching the outside world.
    fn check(&self, input: &SchemaRef) -> Vec<OptionError>;

    /// Creates the running sink (for example creates its output folder).
    ///
    /// # Errors
    /// A one-line error naming what could not be created and why.
    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Sink>, BoxError>;
}

/// A kind of source, as named by `type = "..."` in a query file.
#[derive(Clone, Copy, Debug)]
pub struct SourceKind {
    /// The `type` value.
    pub name: &'static str,
    /// One line saying what it reads.
    pub summary: &'static str,
    /// Parses a node's options (without `type`).
    pub parse: fn(toml::Table) -> Result<Box<dyn SourceConfig>, OptionError>,
}

/// A kind of sink, as named by `type = "..."` in a query file.
#[derive(Clone, Copy, Debug)]
pub struct SinkKind {
    /// The `type` value.
    pub name: &'static str,
    /// One line saying what it writes.
    pub summary: &'static str,
    /// Parses a node's options (without `type` and `inputs`).
    pub parse: fn(toml::Table) -> Result<Box<dyn SinkConfig>, OptionError>,
}

/// Every source kind, sorted by name.
pub fn sources() -> &'static [SourceKind] {
    &[
        file::KIND,
        rpi::GPIO_KIND,
        http::KIND,
        rpi::I2C_KIND,
        modbus::KIND,
        mqtt::SOURCE_KIND,
        simulator::KIND,
    ]
}

/// Every sink kind, sorted by name.
pub fn sinks() -> &'static [SinkKind] {
    &[
        flight::sink::KIND,
        mqtt::SINK_KIND,
        parquet::KIND,
        stdout::KIND,
    ]
}
