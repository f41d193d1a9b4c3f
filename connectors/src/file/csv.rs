//! CSV records to Arrow: plain records in one pass ([`super::csv_plain`]), others with
//! arrow-csv, and one record at a time when that fails.
//!
//! Timestamp fields accept epoch milliseconds and date-times (RFC 3339, or without an offset,
//! taken as UTC). arrow-csv parses only the latter, so the first data record decides per field:
//! if it holds digits, the fast path reads that column as `int64` and reinterprets it as
//! milliseconds. A record that does not fit the choice fails its slice and is rescued alone.
//! Empty fields are nulls.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use edgeflow_engine::arrow::csv::ReaderBuilder;
use edgeflow_engine::arrow::csv::reader::Decoder;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::FieldType;

use super::csv_plain::PlainCsv;
use super::decode::{RecordDecoder, Reject};
use super::lenient::{Cell, one_row};
use crate::timestamps::utc_millis;

/// How a timestamp column is read on the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimestampText {
    /// Epoch milliseconds.
    Millis,
    /// A date-time.
    DateTime,
}

/// Decodes CSV records into batches of `schema`.
pub(crate) struct CsvDecoder {
    schema: SchemaRef,
    types: Vec<FieldType>,
    delimiter: u8,
    max_records: usize,
    /// Per field, how timestamps are written; decided by the first data record.
    modes: Option<Vec<TimestampText>>,
    fast: Option<Decoder>,
    /// The one-pass decoder for plain records, when every column is one it reads.
    plain: Option<PlainCsv>,
    text: Option<Decoder>,
    text_schema: SchemaRef,
}

impl CsvDecoder {
    /// A decoder for `schema` whose field types are `types`, for slices of at most
    /// `max_records` records.
    pub(crate) fn new(
        schema: SchemaRef,
        types: Vec<FieldType>,
        delimiter: u8,
        max_records: usize,
    ) -> Self {
        let text_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        Self {
            schema,
            types,
            delimiter,
            max_records: max_records.max(1),
            modes: None,
            fast: None,
            plain: None,
            text: None,
            text_schema,
        }
    }

    fn builder(&self, schema: SchemaRef, records: usize) -> ReaderBuilder {
        ReaderBuilder::new(schema)
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(records)
    }

    /// Splits one record into its fields as text (nulls for empty fields).
    fn fields_of(&mut self, record: &[u8]) -> Result<RecordBatch, ArrowError> {
        let decoder = self
            .text
            .take()
            .unwrap_or_else(|| self.builder(self.text_schema.clone(), 1).build_decoder());
        let (decoder, result) = run(decoder, record);
        self.text = decoder;
        result
    }

    /// The header's field names, to compare with the schema.
    pub(crate) fn header_names(&mut self, record: &[u8]) -> Option<Vec<String>> {
        let mut builder = self.builder(self.text_schema.clone(), 1);
        builder = builder.with_truncated_rows(true);
        let (_, result) = run(builder.build_decoder(), record);
        let fields = result.ok()?;
        Some(
            fields
                .columns()
                .iter()
                .map(|c| {
                    let text = c.as_string::<i32>();
                    if c.is_valid(0) {
                        text.value(0).trim().to_string()
                    } else {
                        String::new()
                    }
                })
                .collect(),
        )
    }

    fn decide_modes(&mut self, bytes: &[u8]) -> Vec<TimestampText> {
        let first = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes, |end| &bytes[..=end]);
        let fields = self.fields_of(first).ok();
        self.types
            .iter()
            .enumerate()
            .map(|(index, field_type)| {
                let digits = fields.as_ref().is_some_and(|row| {
                    let column = row.column(index).as_string::<i32>();
                    column.is_valid(0) && {
                        let text = column.value(0).trim();
                        let text = text.strip_prefix('-').unwrap_or(text);
                        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
                    }
                });
                if *field_type == FieldType::TimestampMs && digits {
                    TimestampText::Millis
                } else {
                    TimestampText::DateTime
                }
            })
            .collect()
    }

    fn fast_schema(&self, modes: &[TimestampText]) -> SchemaRef {
        Arc::new(Schema::new(
            self.schema
                .fields()
                .iter()
                .zip(modes)
                .map(|(field, mode)| match (mode, field.data_type()) {
                    (TimestampText::Millis, _) => Field::new(field.name(), DataType::Int64, true),
                    // Zone-less: arrow cannot parse the zone name "UTC" (see `timestamps`).
                    (TimestampText::DateTime, DataType::Timestamp(unit, _)) => {
                        Field::new(field.name(), DataType::Timestamp(*unit, None), true)
                    }
                    (TimestampText::DateTime, _) => field.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ))
    }
}

/// `batch` relabelled to `schema`: timestamp columns (read as epoch-ms integers or zone-less
/// timestamps) become `timestamp_ms` UTC.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                utc_millis(column)
            }
        })
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Feeds `bytes` (whole records) to `decoder` and flushes. Returns the decoder when it can be
/// used again (after an error its state is unknown, so it is dropped).
fn run(mut decoder: Decoder, bytes: &[u8]) -> (Option<Decoder>, Result<RecordBatch, ArrowError>) {
    let mut offset = 0;
    while offset < bytes.len() {
        match decoder.decode(&bytes[offset..]) {
            Ok(0) => break,
            Ok(read) => offset += read,
            Err(error) => return (None, Err(error)),
        }
    }
    // A full decoder stops after the `\r` of a last `\r\n`; the `\n` left over is no record.
    if bytes[offset..].iter().any(|b| !matches!(b, b'\r' | b'\n')) {
        return (
            None,
            Err(ArrowError::CsvError(
                "more records than the decoder was sized for".into(),
            )),
        );
    }
    match decoder.flush() {
        Ok(Some(batch)) => (Some(decoder), Ok(batch)),
        Ok(None) => (
            Some(decoder),
            Err(ArrowError::CsvError("no record in the input".into())),
        ),
        Err(error) => (None, Err(error)),
    }
}

impl RecordDecoder for CsvDecoder {
    fn decode(&mut self, bytes: &[u8], records: usize) -> Result<RecordBatch, ArrowError> {
        if records > self.max_records {
            return Err(ArrowError::CsvError("slice too large".into()));
        }
        let modes = match &self.modes {
            Some(modes) => modes.clone(),
            None => {
                let modes = self.decide_modes(bytes);
                self.modes = Some(modes.clone());
                self.fast = None;
                self.plain = PlainCsv::new(self.fast_schema(&modes), self.delimiter);
                modes
            }
        };
        if let Some(batch) = self.plain.as_ref().and_then(|p| p.decode(bytes, records)) {
            return conform(&batch, &self.schema);
        }
        let decoder = match self.fast.take() {
            Some(decoder) => decoder,
            None => self
                .builder(self.fast_schema(&modes), self.max_records)
                .build_decoder(),
        };
        let (decoder, result) = run(decoder, bytes);
        self.fast = decoder;
        conform(&result?, &self.schema)
    }

    fn rescue(&mut self, record: &[u8]) -> Result<RecordBatch, Reject> {
        let fields = self.fields_of(record).map_err(|error| Reject {
            reason: "malformed_csv",
            message: csv_problem(&error),
        })?;
        let cells: Vec<Cell<'_>> = fields
            .columns()
            .iter()
            .map(|column| {
                let text = column.as_string::<i32>();
                if text.is_valid(0) {
                    Cell::Text(text.value(0))
                } else {
                    Cell::Null
                }
            })
            .collect();
        one_row(&self.schema, &self.types, &cells).map_err(|message| Reject {
            reason: "wrong_type",
            message,
        })
    }
}

/// arrow-csv's error for one record in our words (its line numbers count from the slice).
fn csv_problem(error: &ArrowError) -> String {
    let text = error.to_string();
    if let Some(at) = text.find("expected ")
        && text.contains("incorrect number of fields")
    {
        let counts = text[at..].replace(" got ", ", found ");
        return format!("wrong number of fields ({counts})");
    }
    if text.contains("UTF-8") || text.contains("utf-8") {
        return "the record is not valid UTF-8".into();
    }
    format!("not a valid CSV record: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_options::{SchemaSpec, resolve_schema};
    use edgeflow_engine::arrow::array::Array;
    use edgeflow_engine::arrow::datatypes::{Float64Type, TimestampMillisecondType};

    fn decoder() -> CsvDecoder {
        let resolved = resolve_schema(
            &SchemaSpec::new([("id", "string"), ("ts", "timestamp_ms"), ("t", "float64")]),
            None,
        )
        .unwrap();
        let types = resolved.fields.iter().map(|(_, t)| *t).collect();
        CsvDecoder::new(resolved.schema, types, b',', 100)
    }

    #[test]
    fn epoch_and_rfc3339_timestamps_both_decode() {
        let mut csv = decoder();
        let rows = csv
            .decode(b"a,1704067200000,1.5\nb,1704067200001,\n", 2)
            .unwrap();
        let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.values().as_ref(), [1_704_067_200_000, 1_704_067_200_001]);
        assert_eq!(rows.schema_ref(), &csv.schema);
        assert!(rows.column(2).is_null(1));

        let mut csv = decoder();
        let rows = csv
            .decode(
                b"a,2024-01-01T00:00:00Z,1.5\nb,\"2024-01-01 00:00:01\",2\n",
                2,
            )
            .unwrap();
        let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.values().as_ref(), [1_704_067_200_000, 1_704_067_201_000]);
        // The other form fails the fast path but is rescued.
        assert!(csv.decode(b"c,1704067200000,3\n", 1).is_err());
        let row = csv.rescue(b"c,1704067200000,3\n").unwrap();
        let t = row.column(2).as_primitive::<Float64Type>();
        assert_eq!(t.value(0), 3.0);
    }

    #[test]
    fn rescue_tells_malformed_records_from_wrong_types() {
        let mut csv = decoder();
        let reject = csv.rescue(b"a,1704067200000\n").unwrap_err();
        assert_eq!(reject.reason, "malformed_csv");
        assert_eq!(
            reject.message,
            "wrong number of fields (expected 3, found 2)"
        );
        let reject = csv.rescue(b"a,1704067200000,warm\n").unwrap_err();
        assert_eq!(reject.reason, "wrong_type");
        assert!(reject.message.contains("'warm'"), "{}", reject.message);
        let reject = csv.rescue(b"a,1704067200000,1,2\n").unwrap_err();
        assert_eq!(reject.reason, "malformed_csv");
        let reject = csv.rescue(b"\xff\xfe,1704067200000,1\n").unwrap_err();
        assert_eq!(reject.reason, "malformed_csv", "{}", reject.message);
        // The decoder still works after all that.
        assert_eq!(csv.decode(b"a,5,1\n", 1).unwrap().num_rows(), 1);
    }

    #[test]
    fn header_names_are_read_as_text() {
        let mut csv = decoder();
        assert_eq!(csv.header_names(b"id, ts ,t\n").unwrap(), ["id", "ts", "t"]);
        assert_eq!(csv.header_names(b"id,ts\n").unwrap(), ["id", "ts", ""]);
    }
}
