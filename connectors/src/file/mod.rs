//! The `file` source: replays CSV, JSON-lines or Parquet files.
//!
//! Use it to run a query over recorded data, to backfill, and to benchmark a pipeline at full
//! speed.
//!
//! ```toml
//! [sources.history]
//! type = "file"
//! path = "data/readings-*.csv"    # one file, or a glob over file names (read in name order)
//! format = "csv"                  # csv | jsonl | parquet; default from the extension
//! schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }
//! event_time = "ts"
//! header = true                   # csv only
//! delimiter = ","                 # csv only; default "\t" for .tsv files
//! speed = "max"                   # or k: replay at k times the recorded pace
//! max_out_of_orderness = "2s"
//! ```
//!
//! Files are read on a blocking thread in batches of up to [`BATCH_ROWS`] rows.
//!
//! # Values
//!
//! CSV columns are matched to the schema by position (a header that names them differently
//! only logs a warning), JSON keys and Parquet columns by name; JSON keys not in the schema
//! are ignored. Empty CSV fields, missing JSON keys and `null` are nulls. Timestamp fields
//! accept epoch milliseconds (`1704067200000`) and date-times (`2024-01-01T00:00:00Z`, or
//! `2024-01-01 00:00:00`, taken as UTC). A CSV quoted field may span lines.
//!
//! # Bad records
//!
//! CSV and JSON go through arrow-csv / arrow-json a chunk at a time (of 8192 records; on a
//! machine with more than one core, a helper thread decodes every other chunk while the
//! reading thread cuts the next ones and decodes the rest, and rows leave in file order); a
//! chunk that fails is split in halves until the bad records are isolated (see the `decode`
//! module), so the rows around them are kept, in order. Each bad record is skipped and counted in the source's
//! dropped counters by reason:
//!
//! * `malformed_csv`: wrong number of fields, or not UTF-8;
//! * `malformed_json`: not JSON, or not a JSON object;
//! * `wrong_type`: a value that does not fit its field (`"warm"` in a `float64` field, `true`
//!   in a timestamp).
//!
//! The first ten are logged one by one with file and line number, then a summary every ten
//! seconds.
//!
//! # Parquet
//!
//! Parquet files are read with the parquet crate's Arrow reader. With a `schema`, only those
//! columns are read and cast to the declared types. Without one, the first file's columns are
//! used, made uniform: timestamps become `timestamp_ms` UTC, smaller integers `int64`, smaller
//! floats `float64`, large or dictionary strings `string`; the event-time column may be an
//! integer column of epoch milliseconds, and `event_time` may be omitted when there is exactly
//! one timestamp column. (That schema is read from the file while the query is validated.)

mod chunker;
mod csv;
mod csv_plain;
mod decode;
mod glob;
mod jsonl;
mod lenient;
mod pacer;
mod parquet;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::config::duration;
use edgeflow_engine::schema::FieldType;
use edgeflow_engine::{
    BoxError, BoxFuture, OptionError, Source, SourceContext, WatermarkPolicy, parse_options,
};
use serde::Deserialize;
use tracing::{debug, warn};

use self::chunker::{Chunk, Chunker};
use self::csv::CsvDecoder;
use self::decode::{RecordDecoder, RejectLog, decode_chunk};
use self::jsonl::JsonDecoder;
use self::pacer::Pacer;
use crate::error::ConnectorError;
use crate::schema_options::{
    SchemaSpec, Speed, default_idle_timeout, idle_timeout, resolve_schema, watermark_policy,
};
use crate::{SourceConfig, SourceKind};

/// The `file` source kind.
pub const KIND: SourceKind = SourceKind {
    name: "file",
    summary: "Replays CSV, JSON-lines or Parquet files, as fast as possible or at recorded pace",
    parse,
};

/// Rows per batch (and records per decoded chunk).
pub const BATCH_ROWS: usize = 8192;

fn parse(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<FileConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

/// The format of the input files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma- (or otherwise) separated values.
    Csv,
    /// One JSON object per line (alias `ndjson`, `json`).
    #[serde(alias = "ndjson", alias = "json")]
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The name as written in a query file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }

    fn from_extension(path: &str) -> Option<Self> {
        let extension = Path::new(path)
            .extension()?
            .to_string_lossy()
            .to_ascii_lowercase();
        match extension.as_str() {
            "csv" | "tsv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "parquet" | "pq" | "parq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// Options of the `file` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to read, or a pattern with `*` and `?` in the file name (`data/*.csv`); the
    /// files it matches are read one after the other, in name order.
    pub path: String,
    /// `"csv"`, `"jsonl"` or `"parquet"`. Default: from the extension (`.csv`, `.tsv`,
    /// `.jsonl`, `.ndjson`, `.json`, `.parquet`, `.pq`).
    #[serde(default)]
    pub format: Option<Format>,
    /// Fields and their types, in order (CSV columns are matched by position, JSON keys and
    /// Parquet columns by name). Required for csv and jsonl; Parquet files default to their
    /// own columns.
    #[serde(default)]
    pub schema: Option<SchemaSpec>,
    /// The event-time field; optional when there is exactly one timestamp field. A Parquet
    /// file's event-time column may also hold integer epoch milliseconds.
    #[serde(default)]
    pub event_time: Option<String>,
    /// How far behind the newest event time the watermark trails. Default `"0s"`.
    #[serde(default, deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// After this long without rows, the watermark follows the wall clock. Default `"30s"`;
    /// `"off"` never advances it.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
    /// CSV only: the first line names the columns (and is skipped). Default true.
    #[serde(default)]
    pub header: Option<bool>,
    /// CSV only: the field separator, one ASCII character. Default `","` (`"\t"` for `.tsv`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// `"max"` (as fast as the pipeline takes rows) or a factor k: replay at k times the
    /// pace recorded in the event times. Default `"max"`.
    #[serde(default = "max_speed")]
    pub speed: Speed,
}

const fn max_speed() -> Speed {
    Speed::Max
}

/// Everything checked: what to read and how.
#[derive(Clone, Debug)]
struct FilePlan {
    format: Format,
    schema: SchemaRef,
    event_time: usize,
    /// Field types for text formats (Parquet uses the schema's types directly).
    types: Vec<FieldType>,
    header: bool,
    delimiter: u8,
}

impl FileConfig {
    fn plan(&self) -> Result<FilePlan, Vec<OptionError>> {
        let mut errors = Vec::new();
        if self.path.trim().is_empty() {
            errors.push(OptionError::at("path", "the path is empty"));
        } else if glob::wildcard_in_folder(&self.path) {
            errors.push(OptionError::at(
                "path",
                format!(
                    "'{}' has a wildcard in a folder name; wildcards are supported in the file name only",
                    self.path
                ),
            ));
        }
        let format = match self.format.or_else(|| Format::from_extension(&self.path)) {
            Some(format) => format,
            None => {
                errors.push(OptionError::at(
                    "format",
                    format!(
                        "cannot tell the format of '{}' from its extension; set format = \"csv\", \"jsonl\" or \"parquet\"",
                        self.path
                    ),
                ));
                return Err(errors);
            }
        };
        let tsv = Path::new(&self.path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
        let delimiter = self.delimiter.unwrap_or(if tsv { '\t' } else { ',' });
        if format != Format::Csv {
            for (set, name) in [
                (self.delimiter.is_some(), "delimiter"),
                (self.header.is_some(), "header"),
            ] {
                if set {
                    errors.push(OptionError::at(
                        name,
                        format!(
                            "'{name}' applies to csv files only, and this source reads {} files",
                            format.name()
                        ),
                    ));
                }
            }
        }
        if !delimiter.is_ascii() || matches!(delimiter, '"' | '\n' | '\r') {
            errors.push(OptionError::at(
                "delimiter",
                format!(
                    "invalid delimiter {delimiter:?}: use one ASCII character other than a quote or a line break"
                ),
            ));
        }
        let resolved = match (&self.schema, format) {
            (Some(spec), _) => resolve_schema(spec, self.event_time.as_deref()).map(|r| {
                let types = r.fields.iter().map(|(_, t)| *t).collect();
                (r.schema, r.event_time, types)
            }),
            (None, Format::Parquet) => self.parquet_schema().map_err(|e| vec![e]),
            (None, _) => Err(vec![OptionError::at(
                "schema",
                "csv and jsonl files need a schema, like schema = { ts = \"timestamp_ms\", value = \"float64\" }",
            )]),
        };
        let (schema, event_time, types) = match resolved {
            Ok(resolved) => resolved,
            Err(more) => {
                errors.extend(more);
                return Err(errors);
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(FilePlan {
            format,
            schema,
            event_time,
            types,
            header: self.header.unwrap_or(true),
            delimiter: delimiter as u8,
        })
    }

    /// The schema of the first Parquet file, made uniform.
    fn parquet_schema(&self) -> Result<(SchemaRef, usize, Vec<FieldType>), OptionError> {
        let at_path = |error: ConnectorError| OptionError::at("path", error.to_string());
        let files = glob::expand(&self.path).map_err(at_path)?;
        let first = &files[0];
        let file_schema = parquet::file_schema(first).map_err(at_path)?;
        let (schema, event_time) =
            parquet::derive_schema(&file_schema, first, self.event_time.as_deref())?;
        Ok((schema, event_time, Vec::new()))
    }
}

impl SourceConfig for FileConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.plan().map(|plan| plan.schema)
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.max_out_of_orderness, self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let files = glob::expand(&self.path)?;
        for file in &files {
            let opened = File::open(file).and_then(|f| f.metadata());
            match opened {
                Err(error) => return Err(ConnectorError::open_input(file, &error).into()),
                Ok(metadata) if metadata.is_dir() => {
                    return Err(ConnectorError::OpenInput {
                        path: file.display().to_string(),
                        reason: "it is a folder, not a file".into(),
                    }
                    .into());
                }
                Ok(_) => {}
            }
        }
        let plan = self.plan().map_err(ConnectorError::Options)?;
        Ok(Box::new(FileSource {
            files,
            plan,
            speed: self.speed,
        }))
    }
}

/// The running file source.
#[derive(Debug)]
pub struct FileSource {
    files: Vec<PathBuf>,
    plan: FilePlan,
    speed: Speed,
}

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let reading = tokio::task::spawn_blocking(move || self.read_all(&ctx));
            match reading.await {
                Ok(result) => result.map_err(BoxError::from),
                Err(join) => {
                    Err(ConnectorError::Internal(format!("file reader stopped: {join}")).into())
                }
            }
        })
    }
}

impl FileSource {
    fn read_all(&self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        let metrics = ctx.metrics().clone();
        let mut rejects = RejectLog::new(ctx.name(), &metrics);
        let mut pacer = Pacer::new(self.speed, self.plan.event_time);
        let mut last_line = (PathBuf::new(), 0);
        for file in &self.files {
            if ctx.is_shutdown_requested() {
                break;
            }
            debug!(source = %ctx.name(), file = %file.display(), "Reading input file");
            let go_on = match self.plan.format {
                Format::Parquet => {
                    parquet::read_file(file, &self.plan.schema, BATCH_ROWS, |rows| {
                        pacer.send(rows, ctx)
                    })?
                }
                Format::Csv | Format::Jsonl => {
                    let (go_on, line) = self.read_text(file, ctx, &mut pacer, &mut rejects)?;
                    last_line = (file.clone(), line);
                    go_on
                }
            };
            if !go_on {
                break;
            }
        }
        rejects.finish(&last_line.0, last_line.1);
        Ok(())
    }

    /// Reads one CSV or JSON-lines file; returns whether to go on, and the last line read.
    fn read_text(
        &self,
        file: &Path,
        ctx: &SourceContext,
        pacer: &mut Pacer,
        rejects: &mut RejectLog<'_>,
    ) -> Result<(bool, u64), ConnectorError> {
        let plan = &self.plan;
        let opened = File::open(file).map_err(|error| ConnectorError::open_input(file, &error))?;
        let mut reader = BufReader::with_capacity(1 << 20, opened);
        let read_error = |error: std::io::Error| {
            ConnectorError::read_input(file, crate::error::io_reason(&error))
        };
        // Spreadsheet programs start UTF-8 text with a byte-order mark; it is not data.
        if reader
            .fill_buf()
            .map_err(read_error)?
            .starts_with(b"\xEF\xBB\xBF")
        {
            reader.consume(3);
        }
        let new_decoder = || -> Box<dyn RecordDecoder + Send> {
            match plan.format {
                Format::Csv => Box::new(CsvDecoder::new(
                    plan.schema.clone(),
                    plan.types.clone(),
                    plan.delimiter,
                    BATCH_ROWS,
                )),
                _ => Box::new(JsonDecoder::new(
                    plan.schema.clone(),
                    plan.types.clone(),
                    BATCH_ROWS,
                )),
            }
        };
        let mut chunker = match plan.format {
            Format::Csv => {
                let mut chunker = Chunker::csv(reader, b'"', plan.delimiter);
                if plan.header {
                    let mut header = Vec::new();
                    if chunker
                        .next_record(&mut header)
                        .map_err(read_error)?
                        .is_some()
                    {
                        let mut csv = CsvDecoder::new(
                            plan.schema.clone(),
                            plan.types.clone(),
                            plan.delimiter,
                            BATCH_ROWS,
                        );
                        check_header(&mut csv, &header, file, &plan.schema, ctx.name());
                    }
                }
                chunker
            }
            _ => Chunker::lines(reader),
        };
        let mut decoder = new_decoder();
        let mut last_line = 0;
        if !decode_in_parallel() {
            while let Some(chunk) = chunker.next_chunk(BATCH_ROWS).map_err(read_error)? {
                last_line = chunk.lines.last().copied().unwrap_or(last_line);
                if let Some(rows) =
                    decode_chunk(decoder.as_mut(), &plan.schema, &chunk, file, rejects)
                    && !pacer.send(rows, ctx)
                {
                    return Ok((false, last_line));
                }
                if ctx.is_shutdown_requested() {
                    return Ok((false, last_line));
                }
            }
            return Ok((true, last_line));
        }
        // Two decoders: a helper thread decodes every other chunk while this thread cuts the
        // next chunks and decodes the others; rows still leave in file order.
        let metrics = ctx.metrics().clone();
        std::thread::scope(|scope| {
            let (to_helper, helper_chunks) = std::sync::mpsc::sync_channel::<Chunk>(1);
            let (helper_rows, from_helper) = std::sync::mpsc::sync_channel::<Option<_>>(1);
            let mut helper_decoder = new_decoder();
            let schema = plan.schema.clone();
            let helper_metrics = &metrics;
            scope.spawn(move || {
                let mut helper_rejects = RejectLog::new(ctx.name(), helper_metrics);
                for chunk in helper_chunks {
                    let rows = decode_chunk(
                        helper_decoder.as_mut(),
                        &schema,
                        &chunk,
                        file,
                        &mut helper_rejects,
                    );
                    if helper_rows.send(rows).is_err() {
                        break;
                    }
                }
                helper_rejects.finish(file, 0);
            });
            loop {
                let Some(first) = chunker.next_chunk(BATCH_ROWS).map_err(read_error)? else {
                    return Ok((true, last_line));
                };
                last_line = first.lines.last().copied().unwrap_or(last_line);
                let Some(second) = chunker.next_chunk(BATCH_ROWS).map_err(read_error)? else {
                    let rows = decode_chunk(decoder.as_mut(), &plan.schema, &first, file, rejects);
                    let go_on = rows.is_none_or(|rows| pacer.send(rows, ctx));
                    return Ok((go_on && !ctx.is_shutdown_requested(), last_line));
                };
                last_line = second.lines.last().copied().unwrap_or(last_line);
                to_helper.send(first).map_err(|_| {
                    ConnectorError::Internal("the CSV decoding thread stopped".into())
                })?;
                let second_rows =
                    decode_chunk(decoder.as_mut(), &plan.schema, &second, file, rejects);
                let first_rows = from_helper.recv().map_err(|_| {
                    ConnectorError::Internal("the CSV decoding thread stopped".into())
                })?;
                for rows in [first_rows, second_rows].into_iter().flatten() {
                    if !pacer.send(rows, ctx) {
                        return Ok((false, last_line));
                    }
                }
                if ctx.is_shutdown_requested() {
                    return Ok((false, last_line));
                }
            }
        })
    }
}

/// Whether text files are decoded by two threads: only when the machine has a core to spare.
fn decode_in_parallel() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// Warns when a CSV header does not name the schema's fields (columns go by position).
fn check_header(csv: &mut CsvDecoder, header: &[u8], file: &Path, schema: &SchemaRef, node: &str) {
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    match csv.header_names(header) {
        Some(names) if names == expected => {}
        Some(names) => {
            if let Some((index, (found, wanted))) = names
                .iter()
                .zip(&expected)
                .enumerate()
                .find(|(_, (found, wanted))| found != *wanted)
            {
                warn!(
                    source = %node,
                    file = %file.display(),
                    "Header column {} is '{found}' but the schema calls it '{wanted}'; CSV columns are matched by position",
                    index + 1
                );
            }
        }
        None => warn!(
            source = %node,
            file = %file.display(),
            "The header has more columns than the schema's {}; CSV columns are matched by position",
            expected.len()
        ),
    }
}

#[cfg(test)]
mod tests;
