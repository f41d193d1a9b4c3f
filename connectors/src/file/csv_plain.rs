//! Plain CSV records decoded into Arrow columns in one pass: the fast path of [`super::csv`].
//!
//! Most sensor logs are plain: one record per line, fields that are unquoted or wholly quoted
//! (`"dev-17"`) with no quote, line break or `\r` inside, and strings, numbers and epoch
//! timestamps only. For those, arrow-csv's general machinery (a CSV state machine that copies
//! every field, then a pass per column) does more work than needed: here each field is read
//! straight into its column in one pass (a number is parsed where it stands and its end is
//! where the parser stopped), with the parsers arrow-csv uses, so the values are exactly the
//! ones arrow-csv gives.
//!
//! Anything else (an escaped quote, a quoted line break, a stray `\r`, a field count that
//! differs, text that is not UTF-8, a value that does not parse, a `bool` or date-time column)
//! makes [`PlainCsv::decode`] decline with `None`, and the caller uses arrow-csv, which
//! handles it or reports it in detail.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use edgeflow_engine::arrow::compute::kernels::cast_utils::Parser;
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};

/// The column kinds the plain decoder reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Utf8,
    Float64,
    Int64,
}

enum Column {
    Utf8(StringBuilder),
    Float64(Float64Builder),
    Int64(Int64Builder),
}

const QUOTE: u8 = b'"';

impl Column {
    fn new(kind: Kind, rows: usize, bytes: usize) -> Self {
        match kind {
            Kind::Utf8 => Column::Utf8(StringBuilder::with_capacity(rows, bytes)),
            Kind::Float64 => Column::Float64(Float64Builder::with_capacity(rows)),
            Kind::Int64 => Column::Int64(Int64Builder::with_capacity(rows)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Utf8(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
        }
    }

    /// Appends one field's text as arrow-csv reads it; `None` if it does not parse.
    fn append_text(&mut self, field: &str) -> Option<()> {
        // arrow-csv reads an empty field as null, whatever the type.
        if field.is_empty() {
            self.append_null();
            return Some(());
        }
        match self {
            Column::Utf8(b) => b.append_value(field),
            Column::Float64(b) => b.append_value(Float64Type::parse(field)?),
            Column::Int64(b) => b.append_value(Int64Type::parse(field)?),
        }
        Some(())
    }

    /// Reads the unquoted field starting at `from` of `text` into the column; returns where
    /// it ends (the delimiter, the line end or its `\r`), or `None` to decline.
    fn read_unquoted(&mut self, text: &str, from: usize, delimiter: u8) -> Option<usize> {
        let bytes = text.as_bytes();
        let ends_field = |b: u8| b == delimiter || b == b'\n' || b == b'\r';
        if ends_field(*bytes.get(from)?) {
            self.append_null();
            return Some(from);
        }
        match self {
            Column::Float64(b) => {
                // The longest number at `from`, in one pass: the same grammar and value as
                // arrow's own parser (lexical-core's standard format), which is what
                // arrow-csv calls on the whole field.
                let (value, used) = lexical_core::parse_partial::<f64>(&bytes[from..]).ok()?;
                b.append_value(value);
                Some(from + used)
            }
            Column::Int64(b) => {
                // `[+-]?[0-9]+`, accumulated as it is scanned; the rare long or odd ones go to
                // arrow's parser (which rejects what is not a number).
                let signed = usize::from(matches!(bytes[from], b'-' | b'+'));
                let digits = &bytes[from + signed..];
                let used = digits.iter().position(|b| !b.is_ascii_digit())?;
                let end = from + signed + used;
                if used == 0 || used > 18 {
                    self.append_text(text.get(from..end)?)?;
                    return Some(end);
                }
                let magnitude = digits[..used]
                    .iter()
                    .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
                b.append_value(if bytes[from] == b'-' {
                    -magnitude
                } else {
                    magnitude
                });
                Some(end)
            }
            Column::Utf8(_) => {
                let used = memchr::memchr3(delimiter, b'\n', QUOTE, &bytes[from..])?;
                let mut end = from + used;
                // A quote inside an unquoted field is text to arrow-csv: rare, left to it.
                if bytes[end] == QUOTE {
                    return None;
                }
                if bytes[end] == b'\n' && bytes[end - 1] == b'\r' {
                    end -= 1;
                }
                self.append_text(text.get(from..end)?)?;
                Some(end)
            }
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Utf8(mut b) => Arc::new(b.finish()),
            Column::Float64(mut b) => Arc::new(b.finish()),
            Column::Int64(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The first quote in `bytes`: a plain loop for short fields (the usual quoted device id),
/// where it beats setting up a vector search, then `memchr`.
fn find_quote(bytes: &[u8]) -> Option<usize> {
    const SHORT: usize = 24;
    let short = &bytes[..bytes.len().min(SHORT)];
    match short.iter().position(|&b| b == QUOTE) {
        Some(at) => Some(at),
        None if bytes.len() > SHORT => memchr::memchr(QUOTE, &bytes[SHORT..]).map(|at| SHORT + at),
        None => None,
    }
}

/// Decodes plain CSV records for one schema (the one arrow-csv would be given).
#[derive(Debug, Clone)]
pub(crate) struct PlainCsv {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    delimiter: u8,
}

impl PlainCsv {
    /// A decoder for `schema`, or `None` if it has a column the plain decoder does not read
    /// or if `delimiter` could be part of a value it reads (a number, a quote, a line end).
    pub(crate) fn new(schema: SchemaRef, delimiter: u8) -> Option<Self> {
        let separates = delimiter == b'\t'
            || (delimiter.is_ascii_punctuation()
                && !matches!(delimiter, b'"' | b'.' | b'+' | b'-'));
        if !separates {
            return None;
        }
        let kinds = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Utf8 => Some(Kind::Utf8),
                DataType::Float64 => Some(Kind::Float64),
                DataType::Int64 => Some(Kind::Int64),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        (!kinds.is_empty()).then_some(Self {
            schema,
            kinds,
            delimiter,
        })
    }

    /// Decodes `bytes`, which hold `records` whole records each ending with `\n`, or declines.
    pub(crate) fn decode(&self, bytes: &[u8], records: usize) -> Option<RecordBatch> {
        // Checked once for the whole slice, so that fields can be sliced as text.
        let text = std::str::from_utf8(bytes).ok()?;
        // csv_core also ends a record at a lone `\r`: leave any `\r` but that of `\r\n` to it.
        if memchr::memchr_iter(b'\r', bytes).any(|at| bytes.get(at + 1) != Some(&b'\n')) {
            return None;
        }
        let width = self.kinds.len();
        let mut columns: Vec<Column> = self
            .kinds
            .iter()
            .map(|&kind| Column::new(kind, records, bytes.len() / width))
            .collect();
        let delimiter = self.delimiter;
        let (mut rows, mut at) = (0, 0);
        while at < bytes.len() {
            for (index, column) in columns.iter_mut().enumerate() {
                let end = if bytes.get(at) == Some(&QUOTE) {
                    // Wholly quoted: the next quote must end the field (`""` inside, or text
                    // after the closing quote, is left to arrow-csv), on the same line.
                    let close = at + 1 + find_quote(&bytes[at + 1..])?;
                    if bytes[at + 1..close].contains(&b'\n') {
                        return None;
                    }
                    column.append_text(text.get(at + 1..close)?)?;
                    close + 1
                } else {
                    column.read_unquoted(text, at, delimiter)?
                };
                at = if index + 1 < width {
                    (bytes.get(end) == Some(&delimiter)).then_some(end + 1)?
                } else {
                    match bytes.get(end..)? {
                        [b'\n', ..] => end + 1,
                        [b'\r', b'\n', ..] => end + 2,
                        _ => return None,
                    }
                };
            }
            rows += 1;
        }
        if rows != records {
            return None;
        }
        let columns = columns.into_iter().map(Column::finish).collect();
        RecordBatch::try_new(self.schema.clone(), columns).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::csv::ReaderBuilder;
    use edgeflow_engine::arrow::datatypes::{Field, Schema};
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("t", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    /// What arrow-csv makes of the same bytes, or `None` if it fails.
    fn arrow_csv(bytes: &[u8], records: usize) -> Option<RecordBatch> {
        let mut decoder = ReaderBuilder::new(schema())
            .with_header(false)
            .with_batch_size(records.max(1))
            .build_decoder();
        let mut offset = 0;
        while offset < bytes.len() {
            match decoder.decode(&bytes[offset..]).ok()? {
                0 => break,
                read => offset += read,
            }
        }
        decoder.flush().ok()?
    }

    fn plain() -> PlainCsv {
        PlainCsv::new(schema(), b',').unwrap()
    }

    #[test]
    fn plain_records_decode_as_arrow_csv_decodes_them() {
        let text = b"dev-1,21.5,7\n\"dev,2\",-1e3,\r\n,,\n\"\",NaN,-0\n\"x\",\"2\",\"3\"\n";
        let got = plain().decode(text, 5).expect("plain records");
        assert_eq!(Some(got.clone()), arrow_csv(text, 5));
        assert_eq!(got.num_rows(), 5);
        // Empty fields, quoted or not, are nulls.
        assert_eq!(got.column(0).null_count(), 2);
        assert_eq!(got.column(2).null_count(), 2);
    }

    #[test]
    fn anything_unusual_is_declined() {
        for text in [
            &b"a,1,2\n"[..],
            b"a,1\n",
            b"a,1,2,3\n",
            b"\"a\"\"b\",1,2\n",
            b"a\"b,1,2\n",
            b"\"a\"b,1,2\n",
            b"\"a\nb\",1,2\n",
            b"a\rb,1,2\n",
            b"a,warm,2\n",
            b"a,1,2.5\n",
            b"\xff,1,2\n",
            b"a,1,2",
        ] {
            let records = memchr::memchr_iter(b'\n', text).count();
            let got = plain().decode(text, records.max(1));
            if text == b"a,1,2\n" {
                assert!(got.is_some());
            } else {
                assert!(got.is_none(), "{:?}", String::from_utf8_lossy(text));
            }
        }
        assert!(PlainCsv::new(schema(), b'"').is_none());
        let with_bool = Arc::new(Schema::new(vec![Field::new("b", DataType::Boolean, true)]));
        assert!(PlainCsv::new(with_bool, b',').is_none());
    }

    /// On random records (quotes, delimiters, line ends, numbers good and bad), whatever the
    /// plain decoder accepts is exactly what arrow-csv makes of it; and it accepts the plain
    /// ones.
    #[test]
    fn agrees_with_arrow_csv_on_random_records() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let pieces: &[&str] = &[
            "a", "é", "7", "-", ".", "e", ",", "\"", "\"\"", " ", "\r", "1.5", "NaN", "inf", "",
        ];
        let (mut accepted, mut plain_accepted) = (0, 0);
        for round in 0..20_000 {
            let lines = rng.random_range(1..4);
            let mut text = String::new();
            let mut is_plain = true;
            for _ in 0..lines {
                if rng.random_bool(0.5) {
                    // A plain record.
                    let id = ["dev-1", "\"dev,2\"", "", "\"\""][rng.random_range(0..4)];
                    let t = ["21.5", "-1e-3", "", "\"4\""][rng.random_range(0..4)];
                    let n = ["7", "-12", "", "0", "+5", "0012", "-9223372036854775808"]
                        [rng.random_range(0..7)];
                    let end = if rng.random_bool(0.2) { "\r\n" } else { "\n" };
                    text.push_str(&format!("{id},{t},{n}{end}"));
                } else {
                    is_plain = false;
                    let length = rng.random_range(0..10);
                    for _ in 0..length {
                        text.push_str(pieces[rng.random_range(0..pieces.len())]);
                    }
                    text.push('\n');
                }
            }
            let bytes = text.as_bytes();
            let records = memchr::memchr_iter(b'\n', bytes).count();
            if let Some(got) = plain().decode(bytes, records) {
                accepted += 1;
                assert_eq!(
                    Some(got),
                    arrow_csv(bytes, records),
                    "round {round}: {text:?}"
                );
            } else {
                assert!(
                    !is_plain,
                    "round {round}: a plain record was declined: {text:?}"
                );
            }
            plain_accepted += usize::from(is_plain);
        }
        assert!(accepted >= plain_accepted && plain_accepted > 1_000);
    }
}
