//! Decoding chunks of text records fast, and isolating the bad ones when that fails.
//!
//! A [`RecordDecoder`] decodes a run of whole records at once (arrow-csv or arrow-json: the
//! fast path) and, for a single record, says precisely what is wrong with it
//! ([`RecordDecoder::rescue`]). [`decode_chunk`] tries the whole chunk first; if that fails it
//! splits the chunk in halves and recurses, down to single records. A few bad lines in a chunk
//! of 8192 thus cost a few dozen extra decodes, not 8192 single-line ones, and the good rows
//! around them are kept in order.
//!
//! [`RejectLog`] counts every skipped record in the node's metrics (by reason) and logs it with
//! file and line: the first [`LOGGED_REJECTS`] one by one, then a summary every
//! [`SUMMARY_EVERY`].

use std::path::Path;
use std::time::{Duration, Instant};

use edgeflow_engine::NodeMetrics;
use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::arrow::compute::concat_batches;
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::arrow::error::ArrowError;
use tracing::warn;

use super::chunker::Chunk;

/// Why one record was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The metrics reason: `malformed_csv`, `malformed_json` or `wrong_type`.
    pub reason: &'static str,
    /// What is wrong, quoting the bad value.
    pub message: String,
}

/// Decodes records of one text format.
pub(crate) trait RecordDecoder {
    /// Decodes `records` whole records (each ending with `\n`); any bad record fails it all.
    fn decode(&mut self, bytes: &[u8], records: usize) -> Result<RecordBatch, ArrowError>;

    /// Decodes one record on its own, or says why it cannot be used.
    fn rescue(&mut self, record: &[u8]) -> Result<RecordBatch, Reject>;
}

/// Records logged one by one before the log switches to summaries.
pub(crate) const LOGGED_REJECTS: u64 = 10;

/// How often the summary of further rejects is logged.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Counts and logs skipped records, without flooding the log.
pub(crate) struct RejectLog<'a> {
    node: String,
    metrics: &'a NodeMetrics,
    logged: u64,
    unlogged: u64,
    since: Instant,
}

impl<'a> RejectLog<'a> {
    /// A log for the node `node`, counting into `metrics`.
    pub(crate) fn new(node: &str, metrics: &'a NodeMetrics) -> Self {
        Self {
            node: node.to_string(),
            metrics,
            logged: 0,
            unlogged: 0,
            since: Instant::now(),
        }
    }

    /// Counts and (maybe) logs one skipped record.
    pub(crate) fn reject(&mut self, file: &Path, line: u64, reject: &Reject) {
        self.metrics.count_dropped(reject.reason, 1);
        if self.logged < LOGGED_REJECTS {
            self.logged += 1;
            warn!(
                source = %self.node,
                file = %file.display(),
                line,
                reason = reject.reason,
                "Skipped a bad record: {}",
                reject.message
            );
            if self.logged == LOGGED_REJECTS {
                warn!(
                    source = %self.node,
                    "Further bad records are counted and summarised every {}s",
                    SUMMARY_EVERY.as_secs()
                );
                self.since = Instant::now();
            }
            return;
        }
        self.unlogged += 1;
        if self.since.elapsed() >= SUMMARY_EVERY {
            self.summarise(file, line);
        }
    }

    fn summarise(&mut self, file: &Path, line: u64) {
        if self.unlogged > 0 {
            warn!(
                source = %self.node,
                file = %file.display(),
                line,
                skipped = self.unlogged,
                "Skipped {} more bad records (see the source's dropped counters)",
                self.unlogged
            );
        }
        self.unlogged = 0;
        self.since = Instant::now();
    }

    /// Logs what is left unlogged; call at the end of the input.
    pub(crate) fn finish(&mut self, file: &Path, line: u64) {
        self.summarise(file, line);
    }

    /// Records rejected so far (logged or not).
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.logged + self.unlogged
    }
}

/// Decodes every record of `chunk`, skipping (and reporting) the bad ones. Returns one batch
/// with the good rows in file order, or `None` when none is good.
pub(crate) fn decode_chunk(
    decoder: &mut dyn RecordDecoder,
    schema: &SchemaRef,
    chunk: &Chunk,
    file: &Path,
    rejects: &mut RejectLog<'_>,
) -> Option<RecordBatch> {
    let mut parts = Vec::new();
    split(
        decoder,
        chunk,
        0,
        chunk.records(),
        file,
        rejects,
        &mut parts,
    );
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        // Batches of one schema always concatenate; fall back to nothing rather than panic.
        _ => concat_batches(schema, &parts).ok(),
    }
    .filter(|batch| batch.num_rows() > 0)
}

fn split(
    decoder: &mut dyn RecordDecoder,
    chunk: &Chunk,
    from: usize,
    to: usize,
    file: &Path,
    rejects: &mut RejectLog<'_>,
    out: &mut Vec<RecordBatch>,
) {
    if from >= to {
        return;
    }
    if let Ok(batch) = decoder.decode(chunk.bytes(from, to), to - from) {
        out.push(batch);
        return;
    }
    if to - from == 1 {
        match decoder.rescue(chunk.bytes(from, to)) {
            Ok(batch) => out.push(batch),
            Err(reject) => rejects.reject(file, chunk.lines[from], &reject),
        }
        return;
    }
    let middle = from + (to - from) / 2;
    split(decoder, chunk, from, middle, file, rejects, out);
    split(decoder, chunk, middle, to, file, rejects, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::chunker::Chunker;
    use edgeflow_engine::NodeRole;
    use edgeflow_engine::arrow::array::{AsArray, Int64Array};
    use edgeflow_engine::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    /// Numbers, one per line; anything else is bad. Counts the decodes it is asked for.
    struct Numbers {
        schema: SchemaRef,
        decodes: usize,
    }

    impl Numbers {
        fn parse(&self, bytes: &[u8]) -> Result<RecordBatch, String> {
            let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            let values = text
                .lines()
                .map(|l| l.trim().parse::<i64>().map_err(|_| format!("'{l}'")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(
                self.schema.clone(),
                vec![Arc::new(Int64Array::from(values))],
            )
            .unwrap())
        }
    }

    impl RecordDecoder for Numbers {
        fn decode(&mut self, bytes: &[u8], _records: usize) -> Result<RecordBatch, ArrowError> {
            self.decodes += 1;
            self.parse(bytes).map_err(ArrowError::ParseError)
        }

        fn rescue(&mut self, record: &[u8]) -> Result<RecordBatch, Reject> {
            self.parse(record).map_err(|message| Reject {
                reason: "wrong_type",
                message,
            })
        }
    }

    #[test]
    fn bad_records_are_isolated_and_good_ones_kept_in_order() {
        let mut text = String::new();
        for i in 0..1000 {
            if i == 17 || i == 500 || i == 501 {
                text.push_str("oops\n");
            } else {
                text.push_str(&format!("{i}\n"));
            }
        }
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let mut chunker = Chunker::lines(std::io::Cursor::new(text.into_bytes()));
        let chunk = chunker.next_chunk(10_000).unwrap().unwrap();
        let mut decoder = Numbers {
            schema: schema.clone(),
            decodes: 0,
        };
        let metrics = NodeMetrics::detached("t", NodeRole::Source);
        let mut rejects = RejectLog::new("t", &metrics);
        let rows =
            decode_chunk(&mut decoder, &schema, &chunk, Path::new("x"), &mut rejects).unwrap();
        assert_eq!(rows.num_rows(), 997);
        let values = rows.column(0).as_primitive::<Int64Type>();
        assert_eq!(values.value(16), 16);
        assert_eq!(values.value(17), 18);
        assert_eq!(rejects.total(), 3);
        assert_eq!(metrics.snapshot().dropped.get("wrong_type"), Some(&3));
        assert!(decoder.decodes < 80, "{} decodes", decoder.decodes);
    }
}
