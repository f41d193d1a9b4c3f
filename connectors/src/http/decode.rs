//! Request bodies → Arrow rows, with an error for every invalid record.
//!
//! Two body formats, chosen by the request's `Content-Type`:
//!
//! * [`BodyFormat::Json`] (`application/json`): one JSON object (one record) or a JSON array
//!   of objects (one record each; records are numbered from 1 in array order);
//! * [`BodyFormat::JsonLines`] (`application/x-ndjson`, `application/jsonl`): one object per
//!   line; blank lines are skipped and records are numbered by their line.
//!
//! Each record is read straight into typed cells with a serde visitor (no intermediate
//! `serde_json::Value`), keys that are not schema fields are skipped, and a record is checked
//! as a whole: every field that does not fit its type, a missing event time, or a device id
//! other than the authenticated one makes it invalid with a message naming the record, the
//! field and the value. A body that is not JSON at all (a syntax error in a JSON document)
//! cannot be split into records and is invalid as a whole.
//!
//! Type rules (as for the MQTT source): a `string` field takes text, numbers and booleans;
//! `float64` and `int64` take numbers or numeric text (`int64` only integral ones); `bool`
//! takes `true`/`false` (also as text); `timestamp_ms` takes epoch milliseconds or RFC 3339
//! text. `null` or an absent key is a null cell.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::compute::kernels::cast_utils::string_to_datetime;
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::schema::{FieldType, UTC};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// How a request body is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object or an array of objects.
    Json,
    /// One JSON object per line.
    JsonLines,
}

impl BodyFormat {
    /// The format for a `Content-Type` header value (parameters such as `charset` ignored);
    /// `None` for types the source does not take.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            "application/x-ndjson"
            | "application/jsonl"
            | "application/json-lines"
            | "application/x-jsonlines" => Some(Self::JsonLines),
            _ => None,
        }
    }
}

/// Why one record (or the whole body) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// The record: its line (JSON lines) or its position from 1 (JSON arrays); 0 for the
    /// body as a whole.
    pub record: usize,
    /// Short snake_case reason, counted in the source's dropped counters:
    /// `malformed_json`, `wrong_type`, `missing_event_time` or `wrong_device`.
    pub reason: &'static str,
    /// What exactly was wrong, quoting the value.
    pub message: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What [`RecordDecoder::decode`] made of a body.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The valid records, as one batch (`None` when there are none).
    pub rows: Option<RecordBatch>,
    /// How many records the body held (valid and invalid).
    pub records: usize,
    /// Every invalid record, in body order.
    pub errors: Vec<RecordError>,
}

impl Decoded {
    /// Valid records.
    pub fn valid(&self) -> usize {
        self.rows.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

/// The schema-dependent part of decoding: which fields exist and how to check them.
#[derive(Clone, Debug)]
pub struct RecordDecoder {
    fields: Vec<(String, FieldType)>,
    event_time: usize,
    device_field: Option<usize>,
    schema: SchemaRef,
    arrival_time: bool,
}

/// One decoded value before it is checked against its field's type.
#[derive(Clone, Debug, PartialEq)]
enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An object or array where a scalar was expected (the text names which).
    Nested(&'static str),
}

/// A checked value, ready for its column.
#[derive(Clone, Debug)]
enum Typed<'c> {
    Null,
    Text(Cow<'c, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

enum ColumnBuilder {
    String(StringBuilder),
    Float64(Float64Builder),
    Int64(Int64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
}

impl ColumnBuilder {
    fn new(field_type: FieldType, capacity: usize) -> Self {
        match field_type {
            FieldType::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            FieldType::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            FieldType::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            FieldType::TimestampMs => {
                Self::Timestamp(TimestampMillisecondBuilder::with_capacity(capacity))
            }
            // `supported` keeps other types out at planning; text is the harmless fallback.
            _ => Self::String(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    fn append(&mut self, value: &Typed<'_>) {
        match (self, value) {
            (Self::String(b), Typed::Text(text)) => b.append_value(text),
            (Self::Float64(b), Typed::Float(v)) => b.append_value(*v),
            (Self::Int64(b), Typed::Int(v)) => b.append_value(*v),
            (Self::Bool(b), Typed::Bool(v)) => b.append_value(*v),
            (Self::Timestamp(b), Typed::Int(v)) => b.append_value(*v),
            (Self::String(b), _) => b.append_null(),
            (Self::Float64(b), _) => b.append_null(),
            (Self::Int64(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
            (Self::Timestamp(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::String(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish().with_timezone(UTC)),
        }
    }
}

/// Whether the source can fill a field of this type.
pub fn supported(field_type: FieldType) -> bool {
    matches!(
        field_type,
        FieldType::String
            | FieldType::Float64
            | FieldType::Int64
            | FieldType::Bool
            | FieldType::TimestampMs
    )
}

/// Per-body state: the column builders and the scratch row.
struct Builder<'d, 'a> {
    decoder: &'d RecordDecoder,
    identity: Option<&'d str>,
    arrival_ms: i64,
    columns: Vec<ColumnBuilder>,
    row: Vec<Cell<'a>>,
    out: Decoded,
}

impl RecordDecoder {
    /// A decoder for rows of `schema`, whose fields and event-time field are `fields` and
    /// `event_time`. `device_field`, when given, is checked against the authenticated
    /// device (and filled with it when a record leaves it out). With `arrival_time`, a
    /// record without an event time gets the time the request arrived.
    pub fn new(
        fields: Vec<(String, FieldType)>,
        event_time: usize,
        device_field: Option<usize>,
        schema: SchemaRef,
        arrival_time: bool,
    ) -> Self {
        Self {
            fields,
            event_time,
            device_field,
            schema,
            arrival_time,
        }
    }

    /// The schema of the batches made.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a whole body. `identity` is the authenticated device id (`None` for
    /// anonymous writes); `arrival_ms` the time the request arrived.
    pub fn decode<'a>(
        &self,
        body: &'a [u8],
        format: BodyFormat,
        identity: Option<&str>,
        arrival_ms: i64,
    ) -> Decoded {
        let capacity = match format {
            BodyFormat::Json => 1,
            BodyFormat::JsonLines => memchr_count(body) + 1,
        };
        let mut builder: Builder<'_, 'a> = Builder {
            decoder: self,
            identity,
            arrival_ms,
            columns: self
                .fields
                .iter()
                .map(|(_, t)| ColumnBuilder::new(*t, capacity))
                .collect(),
            row: Vec::with_capacity(self.fields.len()),
            out: Decoded::default(),
        };
        let mut valid = 0usize;
        match format {
            BodyFormat::Json => {
                let mut deserializer = serde_json::Deserializer::from_slice(body);
                let result = de::Deserializer::deserialize_any(
                    &mut deserializer,
                    BodyVisitor {
                        builder: &mut builder,
                        valid: &mut valid,
                    },
                )
                .and_then(|()| deserializer.end());
                if let Err(error) = result {
                    builder.out.errors.clear();
                    builder.out.errors.push(RecordError {
                        record: 0,
                        reason: "malformed_json",
                        message: syntax_message("the body", &error, None),
                    });
                    builder.out.records = builder.out.records.max(1);
                    valid = 0;
                }
            }
            BodyFormat::JsonLines => {
                for (number, line) in body.split(|&b| b == b'\n').enumerate() {
                    let line_number = number + 1;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    builder.out.records += 1;
                    let mut deserializer = serde_json::Deserializer::from_slice(line);
                    let result = de::Deserializer::deserialize_any(
                        &mut deserializer,
                        RecordVisitor {
                            builder: &mut builder,
                        },
                    )
                    .and_then(|parsed| deserializer.end().map(|()| parsed));
                    match result {
                        Ok(Parsed::Object) => {
                            if builder.finish_row(line_number, "line") {
                                valid += 1;
                            }
                        }
                        Ok(Parsed::Other(what)) => builder.out.errors.push(RecordError {
                            record: line_number,
                            reason: "malformed_json",
                            message: format!(
                                "line {line_number}: expected a JSON object, got {what}"
                            ),
                        }),
                        Err(error) => builder.out.errors.push(RecordError {
                            record: line_number,
                            reason: "malformed_json",
                            message: syntax_message(
                                &format!("line {line_number}"),
                                &error,
                                Some(line),
                            ),
                        }),
                    }
                }
                if builder.out.records == 0 {
                    builder.out.errors.push(RecordError {
                        record: 0,
                        reason: "malformed_json",
                        message: "the body holds no JSON lines".into(),
                    });
                }
            }
        }
        let mut out = builder.out;
        if valid > 0 {
            let arrays = builder
                .columns
                .iter_mut()
                .map(ColumnBuilder::finish)
                .collect();
            // The columns are built from the schema's own field types, so this cannot fail;
            // should it anyway, the records are reported instead of panicking.
            match RecordBatch::try_new(self.schema.clone(), arrays) {
                Ok(rows) => out.rows = Some(rows),
                Err(error) => out.errors.push(RecordError {
                    record: 0,
                    reason: "internal",
                    message: format!("internal error building the batch: {error}. This is a bug: please report it"),
                }),
            }
        }
        out
    }
}

fn memchr_count(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
}

/// A serde_json error as `"<where>, column C: <what>"`, without serde's own position suffix.
fn syntax_message(place: &str, error: &serde_json::Error, line: Option<&[u8]>) -> String {
    let text = error.to_string();
    let what = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text.as_str(),
    };
    match line {
        Some(_) => format!("{place}, column {}: invalid JSON: {what}", error.column()),
        None => format!(
            "{place} is not valid JSON: {what} at line {} column {}",
            error.line(),
            error.column()
        ),
    }
}

impl<'a> Builder<'_, 'a> {
    /// Checks the scratch row and appends it; records an error otherwise. Returns whether
    /// the row was kept.
    fn finish_row(&mut self, record: usize, noun: &str) -> bool {
        let decoder = self.decoder;
        let width = decoder.fields.len();
        self.row.resize(width, Cell::Null);
        // Fill what the record left out: the event time (arrival time) and the device.
        if self.row[decoder.event_time] == Cell::Null && decoder.arrival_time {
            self.row[decoder.event_time] = Cell::Int(self.arrival_ms);
        }
        if let (Some(device), Some(identity)) = (decoder.device_field, self.identity)
            && self.row[device] == Cell::Null
        {
            self.row[device] = Cell::Text(Cow::Owned(identity.to_string()));
        }
        // Check first, then append: a valid row costs no allocation here, and the message
        // of an invalid one is only written when there is one.
        let place = || format!("{noun} {record}");
        let mut error: Option<RecordError> = None;
        for (index, (name, field_type)) in decoder.fields.iter().enumerate() {
            if let Err(shown) = convert(&self.row[index], *field_type) {
                error = Some(RecordError {
                    record,
                    reason: "wrong_type",
                    message: format!(
                        "{}: field '{name}' ({field_type}) cannot hold {shown}",
                        place()
                    ),
                });
                break;
            }
        }
        if error.is_none() && self.row[decoder.event_time] == Cell::Null {
            error = Some(RecordError {
                record,
                reason: "missing_event_time",
                message: format!(
                    "{}: no value for the event-time field '{}'",
                    place(),
                    decoder.fields[decoder.event_time].0
                ),
            });
        }
        if error.is_none()
            && let (Some(device), Some(identity)) = (decoder.device_field, self.identity)
        {
            let same = match &self.row[device] {
                Cell::Text(text) => text == identity,
                Cell::Int(i) => i.to_string() == identity,
                Cell::Float(f) => f.to_string() == identity,
                Cell::Bool(b) => b.to_string() == identity,
                _ => false,
            };
            if !same {
                error = Some(RecordError {
                    record,
                    reason: "wrong_device",
                    message: format!(
                        "{}: field '{}' is {}, but the credentials are those of device '{identity}'",
                        place(),
                        decoder.fields[device].0,
                        describe(&self.row[device])
                    ),
                });
            }
        }
        let kept = match error {
            Some(error) => {
                self.out.errors.push(error);
                false
            }
            None => {
                for ((column, cell), (_, field_type)) in
                    self.columns.iter_mut().zip(&self.row).zip(&decoder.fields)
                {
                    // Checked above; a cell that no longer converts would be a bug, and is
                    // appended as null rather than panicking.
                    column.append(&convert(cell, *field_type).unwrap_or(Typed::Null));
                }
                true
            }
        };
        self.row.clear();
        kept
    }
}

/// Converts a cell for `field_type`; `Err` shows the value that does not fit.
fn convert<'c>(cell: &'c Cell<'_>, field_type: FieldType) -> Result<Typed<'c>, String> {
    let value = match (field_type, cell) {
        (_, Cell::Null) => Some(Typed::Null),
        (FieldType::String, Cell::Text(t)) => Some(Typed::Text(Cow::Borrowed(t))),
        (FieldType::String, Cell::Int(i)) => Some(Typed::Text(Cow::Owned(i.to_string()))),
        (FieldType::String, Cell::Float(f)) => Some(Typed::Text(Cow::Owned(f.to_string()))),
        (FieldType::String, Cell::Bool(b)) => Some(Typed::Text(Cow::Owned(b.to_string()))),
        (FieldType::Float64, Cell::Float(f)) => Some(Typed::Float(*f)),
        (FieldType::Float64, Cell::Int(i)) => Some(Typed::Float(*i as f64)),
        (FieldType::Float64, Cell::Text(t)) => t
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Typed::Float),
        (FieldType::Int64, Cell::Int(i)) => Some(Typed::Int(*i)),
        (FieldType::Int64, Cell::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some(Typed::Int(*f as i64))
        }
        (FieldType::Int64, Cell::Text(t)) => t.trim().parse().ok().map(Typed::Int),
        (FieldType::Bool, Cell::Bool(b)) => Some(Typed::Bool(*b)),
        (FieldType::Bool, Cell::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "1" => Some(Typed::Bool(true)),
            "false" | "f" | "no" | "0" => Some(Typed::Bool(false)),
            _ => None,
        },
        (FieldType::TimestampMs, Cell::Int(i)) => Some(Typed::Int(*i)),
        (FieldType::TimestampMs, Cell::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some(Typed::Int(*f as i64))
        }
        (FieldType::TimestampMs, Cell::Text(t)) => parse_timestamp(t).map(Typed::Int),
        _ => None,
    };
    value.ok_or_else(|| describe(cell))
}

/// Epoch milliseconds (digits) or a date-time (RFC 3339; without an offset, UTC).
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    string_to_datetime(&chrono::Utc, text)
        .ok()
        .map(|moment| moment.timestamp_millis())
}

fn cut(text: &str) -> String {
    if text.len() <= 40 {
        return text.to_string();
    }
    let mut end = 40;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn describe(cell: &Cell<'_>) -> String {
    match cell {
        Cell::Null => "null".into(),
        Cell::Text(t) => format!("\"{}\"", cut(t)),
        Cell::Float(f) => f.to_string(),
        Cell::Int(i) => i.to_string(),
        Cell::Bool(b) => b.to_string(),
        Cell::Nested(what) => (*what).to_string(),
    }
}

/// What a record position held.
enum Parsed {
    Object,
    Other(String),
}

/// The top of a `Json` body: one object or an array of them.
struct BodyVisitor<'b, 'd, 'a> {
    builder: &'b mut Builder<'d, 'a>,
    valid: &'b mut usize,
}

impl<'de: 'a, 'a> Visitor<'de> for BodyVisitor<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.builder.out.records = 1;
        read_fields(self.builder, map)?;
        if self.builder.finish_row(1, "record") {
            *self.valid += 1;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        while let Some(parsed) = seq.next_element_seed(RecordSeed {
            builder: &mut *self.builder,
        })? {
            position += 1;
            self.builder.out.records += 1;
            match parsed {
                Parsed::Object => {
                    if self.builder.finish_row(position, "record") {
                        *self.valid += 1;
                    }
                }
                Parsed::Other(what) => self.builder.out.errors.push(RecordError {
                    record: position,
                    reason: "malformed_json",
                    message: format!("record {position}: expected a JSON object, got {what}"),
                }),
            }
        }
        if position == 0 {
            self.builder.out.errors.push(RecordError {
                record: 0,
                reason: "malformed_json",
                message: "the body is an empty JSON array".into(),
            });
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        Err(E::custom(format!(
            "expected a JSON object or an array of objects, got the string \"{}\"",
            cut(value)
        )))
    }
}

/// One record position: an object is read into the scratch row; anything else is named.
struct RecordSeed<'b, 'd, 'a> {
    builder: &'b mut Builder<'d, 'a>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for RecordSeed<'_, '_, 'a> {
    type Value = Parsed;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_any(RecordVisitor {
            builder: self.builder,
        })
    }
}

struct RecordVisitor<'b, 'd, 'a> {
    builder: &'b mut Builder<'d, 'a>,
}

impl<'de: 'a, 'a> Visitor<'de> for RecordVisitor<'_, '_, 'a> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Parsed, A::Error> {
        read_fields(self.builder, map)?;
        Ok(Parsed::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::Other("an array".into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Parsed, E> {
        Ok(Parsed::Other(format!("the string \"{}\"", cut(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Parsed, E> {
        Ok(Parsed::Other(format!("the number {v}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Parsed, E> {
        Ok(Parsed::Other(format!("the number {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Parsed, E> {
        Ok(Parsed::Other(format!("the number {v}")))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Parsed, E> {
        Ok(Parsed::Other(format!("{v}")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other("null".into()))
    }
}

/// Reads an object's keys into the scratch row, skipping keys that are not fields.
fn read_fields<'de: 'a, 'a, A: MapAccess<'de>>(
    builder: &mut Builder<'_, 'a>,
    mut map: A,
) -> Result<(), A::Error> {
    let width = builder.decoder.fields.len();
    builder.row.clear();
    builder.row.resize(width, Cell::Null);
    let decoder = builder.decoder;
    let fields = decoder.fields.as_slice();
    while let Some(key) = map.next_key_seed(FieldSeed(fields))? {
        match key {
            Some(index) => builder.row[index] = map.next_value_seed(CellSeed)?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// A key: the index of the schema field it names, without copying the key.
struct FieldSeed<'f>(&'f [(String, FieldType)]);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(name, _)| name == key))
    }
}

struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Cell<'de>, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Cell::Int(i),
            Err(_) => Cell::Float(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Nested("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Nested("an array"))
    }
}
