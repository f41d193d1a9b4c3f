//! The `parquet` sink: rows into date-partitioned, rotating, atomically committed Parquet
//! files.
//!
//! Use it to keep what a pipeline produces on the gateway's disk for later upload or for
//! DuckDB, pandas or Spark to read.
//!
//! ```toml
//! [sinks.archive]
//! type = "parquet"
//! inputs = ["clean"]
//! path = "out/readings"            # created if missing
//! compression = "zstd"             # zstd | snappy | lz4 | none
//! max_rows_per_file = 1000000
//! roll_interval = "5m"
//! ```
//!
//! Output layout: `out/readings/date=2024-01-01/part-1704067212345-000001.parquet`. File names
//! start with the wall-clock time the file was opened, so they sort by time. Every file
//! carries the key-value metadata `edgeflow.pipeline = <pipeline name>` and keeps timestamps
//! as UTC timestamps. See the `writer` module for partitioning, rotation and the commit
//! protocol.
//!
//! The sink receives rows on tokio and hands them to a blocking thread that encodes and writes;
//! a timer tick every second lets that thread commit files whose `roll_interval` has passed
//! even when no rows arrive.
//!
//! Writability: the sink's `writable` value is 1 while its folder takes files and 0 after a
//! failed write or a failed probe, with the reason in its `writable` message (`/ready` quotes
//! it). The writer thread probes the folder every [`PROBE_EVERY`] (create it if missing,
//! create and remove a hidden file), so a folder that became read-only, or was replaced by
//! something that is not a folder, shows before the next rows fail.

mod writer;

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ::parquet::basic::{Compression, ZstdLevel};
use ::parquet::file::metadata::KeyValue;
use ::parquet::file::properties::WriterProperties;
use ::parquet::schema::types::ColumnPath;
use edgeflow_engine::arrow::datatypes::{DataType, SchemaRef};
use edgeflow_engine::config::duration;
use edgeflow_engine::schema::event_time_column;
use edgeflow_engine::{
    BoxError, BoxFuture, NodeMetrics, OptionError, Sink, SinkEvent, SinkInput, SinkSummary,
    parse_options,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use self::writer::{PartitionedWriter, WriterSettings};
use crate::error::{ConnectorError, io_reason};
use crate::{SinkConfig, SinkKind};

/// The `parquet` sink kind.
pub const KIND: SinkKind = SinkKind {
    name: "parquet",
    summary: "Writes date-partitioned Parquet files (zstd), rotated by rows and time, committed atomically",
    parse,
};

/// The key-value metadata key naming the pipeline that wrote a file.
pub const PIPELINE_KEY: &str = "edgeflow.pipeline";

fn parse(table: toml::Table) -> Result<Box<dyn SinkConfig>, OptionError> {
    parse_options::<ParquetSinkConfig>(table).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}

/// Compression codec of the written files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Zstandard, level 1: small files, cheap to write.
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// LZ4 (the Parquet `LZ4_RAW` codec).
    Lz4,
    /// No compression (alias `uncompressed`).
    #[serde(alias = "uncompressed")]
    None,
}

impl Codec {
    fn parquet(self) -> Compression {
        match self {
            Self::Zstd => Compression::ZSTD(ZstdLevel::default()),
            Self::Snappy => Compression::SNAPPY,
            Self::Lz4 => Compression::LZ4_RAW,
            Self::None => Compression::UNCOMPRESSED,
        }
    }
}

/// Options of the `parquet` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The output folder (created if missing).
    pub path: String,
    /// `"zstd"`, `"snappy"`, `"lz4"` or `"none"`. Default `"zstd"`.
    #[serde(default)]
    pub compression: Codec,
    /// A file is committed once it holds this many rows. Default 1000000.
    #[serde(default = "default_max_rows_per_file")]
    pub max_rows_per_file: u64,
    /// A file is committed once it has been open this long (wall clock). Default `"5m"`.
    #[serde(default = "default_roll_interval", deserialize_with = "duration")]
    pub roll_interval: Duration,
    /// Rows per Parquet row group (the writer buffers one in memory). Default 131072.
    #[serde(default = "default_max_rows_per_row_group")]
    pub max_rows_per_row_group: usize,
    /// Write into `date=YYYY-MM-DD/` folders by the UTC date of the event-time column.
    /// Default true; without an event-time column the files go straight into `path`.
    #[serde(default = "default_true")]
    pub partition_by_date: bool,
}

const fn default_max_rows_per_file() -> u64 {
    1_000_000
}

const fn default_roll_interval() -> Duration {
    Duration::from_secs(300)
}

const fn default_max_rows_per_row_group() -> usize {
    131_072
}

const fn default_true() -> bool {
    true
}

impl ParquetSinkConfig {
    fn settings(&self, input: &SchemaRef, pipeline: &str) -> WriterSettings {
        let mut properties = WriterProperties::builder()
            .set_compression(self.compression.parquet())
            .set_max_row_group_row_count(Some(self.max_rows_per_row_group))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                PIPELINE_KEY.to_string(),
                pipeline.to_string(),
            )]));
        // Measured readings and aggregates are almost all distinct: a dictionary for them
        // costs CPU and row-group memory and saves nothing, so floats are written plain
        // (keys, timestamps and other columns keep dictionary encoding).
        for field in input.fields() {
            if matches!(
                field.data_type(),
                DataType::Float16 | DataType::Float32 | DataType::Float64
            ) {
                properties = properties
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        let properties = properties.build();
        WriterSettings {
            folder: PathBuf::from(&self.path),
            schema: input.clone(),
            properties,
            partition_column: if self.partition_by_date {
                event_time_column(input).map(|(index, _)| index)
            } else {
                None
            },
            max_rows_per_file: self.max_rows_per_file,
            roll_interval: self.roll_interval,
        }
    }
}

impl SinkConfig for ParquetSinkConfig {
    fn check(&self, input: &SchemaRef) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.path.trim().is_empty() {
            errors.push(OptionError::at("path", "the output folder path is empty"));
        }
        if self.max_rows_per_file == 0 {
            errors.push(OptionError::at(
                "max_rows_per_file",
                "max_rows_per_file = 0 would never hold a row; use 1 or more",
            ));
        }
        if self.roll_interval.is_zero() {
            errors.push(OptionError::at(
                "roll_interval",
                "roll_interval must be longer than 0s",
            ));
        }
        if self.max_rows_per_row_group == 0 {
            errors.push(OptionError::at(
                "max_rows_per_row_group",
                "max_rows_per_row_group = 0 would never hold a row; use 1 or more",
            ));
        }
        if input.fields().is_empty() {
            errors.push(OptionError::at(
                "inputs",
                "the input has no columns; a Parquet file needs at least one",
            ));
        }
        errors
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        let errors = self.check(input);
        if !errors.is_empty() {
            return Err(ConnectorError::Options(errors).into());
        }
        prepare_folder(&self.path)?;
        Ok(Box::new(ParquetSink {
            config: self.clone(),
            schema: input.clone(),
        }))
    }
}

/// Creates the output folder and checks that files can be created in it.
fn prepare_folder(path: &str) -> Result<(), ConnectorError> {
    fs::create_dir_all(path).map_err(|error| ConnectorError::CreateOutput {
        path: path.to_string(),
        reason: io_reason(&error),
    })?;
    let probe = PathBuf::from(path).join(format!(
        ".edgeflow-write-check-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let created = OpenOptions::new().write(true).create_new(true).open(&probe);
    match created {
        Ok(file) => {
            drop(file);
            // The probe is ours; failing to remove it is harmless.
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(error) => Err(ConnectorError::OutputNotWritable {
            path: path.to_string(),
            reason: io_reason(&error),
        }),
    }
}

/// The running Parquet sink.
#[derive(Debug)]
pub struct ParquetSink {
    config: ParquetSinkConfig,
    schema: SchemaRef,
}

/// What the receiving task hands the writer thread.
enum Command {
    Rows(edgeflow_engine::arrow::array::RecordBatch),
    Tick,
}

/// How often the writer thread checks for files to roll when no rows arrive.
const TICK: Duration = Duration::from_secs(1);

/// How often the writer thread checks that the output folder still takes files.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The name of the sink's writability value and message.
const WRITABLE: &str = "writable";

impl Sink for ParquetSink {
    fn run(
        self: Box<Self>,
        mut input: SinkInput,
    ) -> BoxFuture<'static, Result<SinkSummary, BoxError>> {
        Box::pin(async move {
            let settings = self.config.settings(&self.schema, input.pipeline());
            let (sender, receiver) = mpsc::channel::<Command>(4);
            let metrics = input.metrics().clone();
            // `build` has just checked the folder.
            metrics.set_value(WRITABLE, 1);
            let writer = PartitionedWriter::new(settings, metrics.clone());
            let folder = self.config.path.clone();
            let writing =
                tokio::task::spawn_blocking(move || write_all(writer, receiver, &metrics, &folder));
            let mut ticks = tokio::time::interval(TICK.min(self.config.roll_interval));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let command = tokio::select! {
                    event = input.recv() => match event {
                        Some(SinkEvent::Rows(rows)) => Command::Rows(rows),
                        Some(SinkEvent::Watermark(_)) => continue,
                        None => break,
                    },
                    _ = ticks.tick() => Command::Tick,
                };
                if sender.send(command).await.is_err() {
                    // The writer stopped with an error, which it returns below.
                    break;
                }
            }
            drop(sender);
            match writing.await {
                Ok(result) => result.map_err(BoxError::from),
                Err(join) => {
                    Err(ConnectorError::Internal(format!("Parquet writer stopped: {join}")).into())
                }
            }
        })
    }
}

/// The writer thread: writes rows, rolls files on time, probes the folder, commits
/// everything at the end.
fn write_all(
    mut writer: PartitionedWriter,
    mut commands: mpsc::Receiver<Command>,
    metrics: &NodeMetrics,
    folder: &str,
) -> Result<SinkSummary, ConnectorError> {
    let mut probed = Instant::now();
    while let Some(command) = commands.blocking_recv() {
        let result = match command {
            Command::Rows(rows) => writer.write(&rows),
            Command::Tick => {
                if probed.elapsed() >= PROBE_EVERY {
                    probed = Instant::now();
                    report_writable(metrics, prepare_folder(folder).err().as_ref());
                }
                Ok(())
            }
        }
        .and_then(|()| writer.roll_due(Instant::now()));
        if let Err(error) = result {
            report_writable(metrics, Some(&error));
            writer.abandon();
            return Err(error);
        }
    }
    let finished = writer.finish();
    if let Err(error) = &finished {
        report_writable(metrics, Some(error));
    }
    finished
}

/// Sets the sink's `writable` value and message from a probe or write (`None`: it worked).
fn report_writable(metrics: &NodeMetrics, failure: Option<&ConnectorError>) {
    match failure {
        None => {
            metrics.set_value(WRITABLE, 1);
            metrics.set_message(WRITABLE, None);
        }
        Some(error) => {
            metrics.set_value(WRITABLE, 0);
            metrics.set_message(WRITABLE, Some(error.to_string()));
        }
    }
}

#[cfg(test)]
mod tests;
