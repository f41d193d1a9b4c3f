//! Payload decoding for the `mqtt` source: MQTT messages in, Arrow rows out, bad messages
//! out with a reason.
//!
//! One message is decoded as a whole: it yields all of its rows or is rejected (with the
//! first problem found). Formats:
//!
//! * `json`: a JSON object (one row, "wide": many metrics per message), a JSON array of
//!   objects (one row each), or JSON lines (one object per line);
//! * `csv`: one line per row, columns in `csv_columns` order (double quotes allowed);
//! * `number`: a bare number for `value_field` ("long": one metric per message, its name
//!   and the device usually taken from the topic);
//! * `auto`: `{` or `[` is JSON, a number is a number, anything else CSV.
//!
//! Fields named in `topic_fields` (`sensors/{site}/{device_id}/{metric}`) are filled from the
//! topic when the payload does not carry them. Timestamps are epoch milliseconds or RFC 3339
//! text. Without an event time, a message is rejected (`missing_event_time`) unless
//! `arrival_time` is on or it is a bare number: those get the time of arrival.
//!
//! Reasons a message is rejected: `oversized`, `malformed_json`, `malformed_csv`,
//! `malformed_number`, `wrong_type`, `missing_event_time`, `topic_mismatch`.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::compute::kernels::cast_utils::string_to_datetime;
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::schema::{FieldType, UTC, schema_with_event_time, timestamp_type};
use serde_json::Value;

use super::options::PayloadFormat;

/// Why a message was rejected: a metrics reason and a one-line detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Short snake_case reason, counted in the source's dropped counters.
    pub reason: &'static str,
    /// What exactly was wrong (quoting the bad value).
    pub detail: String,
}

impl Reject {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One level of a `topic_fields` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `{name}`: the field at this index of the schema.
    Field(usize),
    /// `+`: any one level, ignored.
    Any,
    /// `#` (last): any rest, ignored.
    Rest,
}

/// A checked `topic_fields` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

impl TopicPattern {
    /// Parses `pattern` against the schema's field names.
    ///
    /// # Errors
    /// A message quoting the pattern: unknown field, bad braces, `#` not last.
    pub fn parse(pattern: &str, fields: &[(String, FieldType)]) -> Result<Self, String> {
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let level = if let Some(inner) = part.strip_prefix('{') {
                let name = inner.strip_suffix('}').ok_or_else(|| {
                    format!("topic_fields '{pattern}': '{part}' is missing its closing '}}'")
                })?;
                let position = fields.iter().position(|(n, _)| n == name).ok_or_else(|| {
                    format!("topic_fields '{pattern}': '{name}' is not a field of the schema")
                })?;
                Level::Field(position)
            } else if *part == "+" {
                Level::Any
            } else if *part == "#" {
                if index != parts.len() - 1 {
                    return Err(format!(
                        "topic_fields '{pattern}': '#' must be the last level"
                    ));
                }
                Level::Rest
            } else if part.contains(['{', '}', '+', '#']) {
                return Err(format!(
                    "topic_fields '{pattern}': '{part}' mixes text and a placeholder; a level is either text, {{field}}, + or #"
                ));
            } else {
                Level::Literal((*part).to_string())
            };
            levels.push(level);
        }
        Ok(Self { levels })
    }

    /// The schema fields this pattern fills.
    pub fn fields(&self) -> impl Iterator<Item = usize> + '_ {
        self.levels.iter().filter_map(|level| match level {
            Level::Field(index) => Some(*index),
            _ => None,
        })
    }

    /// The `(field index, text)` pairs of `topic`, or `None` when the topic does not match.
    fn extract<'t>(&self, topic: &'t str) -> Option<Vec<(usize, &'t str)>> {
        let mut out = Vec::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            match level {
                Level::Rest => return Some(out),
                _ => {
                    let part = parts.next()?;
                    match level {
                        Level::Literal(text) if text != part => return None,
                        Level::Field(index) => out.push((*index, part)),
                        _ => {}
                    }
                }
            }
        }
        parts.next().is_none().then_some(out)
    }
}

/// A decoded value, before it reaches a column builder.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Float(f64),
    Int(i64),
    Bool(bool),
}

/// How the decoder reads messages; see the module docs.
#[derive(Clone, Debug)]
pub struct DecoderSettings {
    /// Fields in schema order.
    pub fields: Vec<(String, FieldType)>,
    /// Index of the event-time field.
    pub event_time: usize,
    /// The output schema.
    pub schema: SchemaRef,
    /// Payload format.
    pub format: PayloadFormat,
    /// Fields from the topic.
    pub topic: Option<TopicPattern>,
    /// The field a bare number fills.
    pub value_field: Option<usize>,
    /// CSV: the field of each column.
    pub csv_columns: Vec<usize>,
    /// CSV: separator.
    pub delimiter: u8,
    /// Use the arrival time when a message has no event time.
    pub arrival_time: bool,
    /// Largest payload decoded.
    pub max_payload_size: usize,
}

/// Decodes messages into rows of the source's schema, a batch at a time.
pub struct PayloadDecoder {
    settings: DecoderSettings,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    scratch: Vec<Vec<Cell>>,
}

enum ColumnBuilder {
    String(StringBuilder),
    Float64(Float64Builder),
    Int64(Int64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
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

impl ColumnBuilder {
    fn new(field_type: FieldType) -> Self {
        match field_type {
            FieldType::String => Self::String(StringBuilder::new()),
            FieldType::Float64 => Self::Float64(Float64Builder::new()),
            FieldType::Int64 => Self::Int64(Int64Builder::new()),
            FieldType::Bool => Self::Bool(BooleanBuilder::new()),
            FieldType::TimestampMs => Self::Timestamp(TimestampMillisecondBuilder::new()),
            // The planner refuses schemas with other types (see `supported`); a string column
            // here would only make the batch fail its schema check, never crash.
            _ => Self::String(StringBuilder::new()),
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

impl PayloadDecoder {
    /// A decoder with empty builders.
    pub fn new(settings: DecoderSettings) -> Self {
        let columns = settings
            .fields
            .iter()
            .map(|(_, t)| ColumnBuilder::new(*t))
            .collect();
        Self {
            settings,
            columns,
            rows: 0,
            scratch: Vec::new(),
        }
    }

    /// Rows decoded and not yet taken by [`Self::finish`].
    pub fn pending_rows(&self) -> usize {
        self.rows
    }

    /// Decodes one message into the pending rows; returns how many rows it gave.
    ///
    /// # Errors
    /// Why the message was rejected; nothing of it is kept.
    pub fn decode(
        &mut self,
        topic: &str,
        payload: &[u8],
        arrival_ms: i64,
    ) -> Result<usize, Reject> {
        if payload.len() > self.settings.max_payload_size {
            return Err(Reject::new(
                "oversized",
                format!(
                    "payload of {} bytes is larger than max_payload_size ({})",
                    payload.len(),
                    self.settings.max_payload_size
                ),
            ));
        }
        let from_topic = match &self.settings.topic {
            Some(pattern) => Some(pattern.extract(topic).ok_or_else(|| {
                Reject::new(
                    "topic_mismatch",
                    format!("topic '{topic}' does not match topic_fields"),
                )
            })?),
            None => None,
        };
        let mut rows = std::mem::take(&mut self.scratch);
        rows.clear();
        let result = self
            .rows_of(payload, &mut rows)
            .and_then(|arrival_default| {
                let width = self.settings.fields.len();
                for row in &mut rows {
                    row.resize(width, Cell::Null);
                    if let Some(pairs) = &from_topic {
                        for &(index, text) in pairs {
                            if row[index] == Cell::Null {
                                row[index] = Cell::Text(text.to_string());
                            }
                        }
                    }
                    let event_time = self.settings.event_time;
                    if row[event_time] == Cell::Null {
                        if arrival_default || self.settings.arrival_time {
                            row[event_time] = Cell::Int(arrival_ms);
                        } else {
                            return Err(Reject::new(
                                "missing_event_time",
                                format!(
                                    "no value for the event-time field '{}'",
                                    self.settings.fields[event_time].0
                                ),
                            ));
                        }
                    }
                    for (index, (name, field_type)) in self.settings.fields.iter().enumerate() {
                        check_cell(&row[index], *field_type).map_err(|shown| {
                            Reject::new(
                                "wrong_type",
                                format!("field '{name}' ({field_type}) cannot hold {shown}"),
                            )
                        })?;
                    }
                }
                Ok(())
            });
        let outcome = match result {
            Ok(()) => {
                let count = rows.len();
                for row in rows.drain(..) {
                    for (cell, (column, (_, field_type))) in row
                        .into_iter()
                        .zip(self.columns.iter_mut().zip(&self.settings.fields))
                    {
                        append(column, *field_type, cell);
                    }
                }
                self.rows += count;
                Ok(count)
            }
            Err(reject) => Err(reject),
        };
        self.scratch = rows;
        outcome
    }

    /// The pending rows as one batch (`None` when there are none).
    pub fn finish(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        // Columns are built from the schema's own field types, so this cannot fail.
        RecordBatch::try_new(self.settings.schema.clone(), arrays).ok()
    }

    /// Splits `payload` into rows of cells by format; returns whether a missing event time
    /// defaults to the arrival time (bare numbers).
    fn rows_of(&self, payload: &[u8], rows: &mut Vec<Vec<Cell>>) -> Result<bool, Reject> {
        let format = match self.settings.format {
            PayloadFormat::Auto => sniff(payload),
            other => other,
        };
        match format {
            PayloadFormat::Json => {
                self.json_rows(payload, rows)?;
                Ok(false)
            }
            PayloadFormat::Csv => {
                self.csv_rows(payload, rows)?;
                Ok(false)
            }
            PayloadFormat::Number | PayloadFormat::Auto => {
                self.number_row(payload, rows)?;
                Ok(true)
            }
        }
    }

    fn json_rows(&self, payload: &[u8], rows: &mut Vec<Vec<Cell>>) -> Result<(), Reject> {
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(object)) => rows.push(self.object_row(&object)),
            Ok(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(Reject::new("malformed_json", "an empty JSON array"));
                }
                for (position, item) in items.iter().enumerate() {
                    let Value::Object(object) = item else {
                        return Err(Reject::new(
                            "malformed_json",
                            format!("array element {position} is not a JSON object"),
                        ));
                    };
                    rows.push(self.object_row(object));
                }
            }
            Ok(other) => {
                return Err(Reject::new(
                    "malformed_json",
                    format!("expected a JSON object or array, got {}", shown(&other)),
                ));
            }
            Err(whole) => {
                // Maybe JSON lines: every non-empty line one object.
                let text = std::str::from_utf8(payload)
                    .map_err(|_| Reject::new("malformed_json", "payload is not UTF-8"))?;
                let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                if lines.len() < 2 {
                    return Err(Reject::new("malformed_json", whole.to_string()));
                }
                for (number, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<Value>(line) {
                        Ok(Value::Object(object)) => rows.push(self.object_row(&object)),
                        Ok(_) => {
                            return Err(Reject::new(
                                "malformed_json",
                                format!("line {} is not a JSON object", number + 1),
                            ));
                        }
                        Err(error) => {
                            return Err(Reject::new(
                                "malformed_json",
                                format!("line {}: {error}", number + 1),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn object_row(&self, object: &serde_json::Map<String, Value>) -> Vec<Cell> {
        self.settings
            .fields
            .iter()
            .map(|(name, _)| match object.get(name) {
                None | Some(Value::Null) => Cell::Null,
                Some(Value::String(text)) => Cell::Text(text.clone()),
                Some(Value::Bool(b)) => Cell::Bool(*b),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(i) => Cell::Int(i),
                    None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                // Nested values have no column type; keep their text so the type check can
                // quote them (a string field takes them as JSON text).
                Some(other) => Cell::Text(other.to_string()),
            })
            .collect()
    }

    fn csv_rows(&self, payload: &[u8], rows: &mut Vec<Vec<Cell>>) -> Result<(), Reject> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| Reject::new("malformed_csv", "payload is not UTF-8"))?;
        let columns = &self.settings.csv_columns;
        let mut any = false;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            any = true;
            let values = split_csv(line, self.settings.delimiter).ok_or_else(|| {
                Reject::new(
                    "malformed_csv",
                    format!("line {}: unclosed quote", number + 1),
                )
            })?;
            if values.len() != columns.len() {
                return Err(Reject::new(
                    "malformed_csv",
                    format!(
                        "line {} has {} fields, expected {}",
                        number + 1,
                        values.len(),
                        columns.len()
                    ),
                ));
            }
            let mut row = vec![Cell::Null; self.settings.fields.len()];
            for (value, &field) in values.into_iter().zip(columns) {
                if !value.is_empty() {
                    row[field] = Cell::Text(value);
                }
            }
            rows.push(row);
        }
        if !any {
            return Err(Reject::new("malformed_csv", "empty payload"));
        }
        Ok(())
    }

    fn number_row(&self, payload: &[u8], rows: &mut Vec<Vec<Cell>>) -> Result<(), Reject> {
        let Some(field) = self.settings.value_field else {
            return Err(Reject::new(
                "malformed_number",
                "a bare number, but value_field names no field of the schema",
            ));
        };
        let text = std::str::from_utf8(payload)
            .map_err(|_| Reject::new("malformed_number", "payload is not UTF-8"))?
            .trim();
        let cell = if let Ok(int) = text.parse::<i64>() {
            Cell::Int(int)
        } else {
            match text.parse::<f64>() {
                Ok(float) if float.is_finite() => Cell::Float(float),
                _ => {
                    return Err(Reject::new(
                        "malformed_number",
                        format!("'{}' is not a number", cut(text)),
                    ));
                }
            }
        };
        let mut row = vec![Cell::Null; self.settings.fields.len()];
        row[field] = cell;
        rows.push(row);
        Ok(())
    }
}

/// The format `auto` picks for a payload.
fn sniff(payload: &[u8]) -> PayloadFormat {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{' | b'[') => PayloadFormat::Json,
        _ => {
            let looks_numeric = std::str::from_utf8(payload)
                .ok()
                .is_some_and(|t| t.trim().parse::<f64>().is_ok());
            if looks_numeric {
                PayloadFormat::Number
            } else {
                PayloadFormat::Csv
            }
        }
    }
}

/// Splits one CSV line; fields may be double-quoted (`""` is a quote inside). `None` for an
/// unclosed quote.
fn split_csv(line: &str, delimiter: u8) -> Option<Vec<String>> {
    let delimiter = delimiter as char;
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == delimiter {
            out.push(std::mem::take(&mut field).trim().to_string());
            at_start = true;
        } else {
            if !c.is_whitespace() {
                at_start = false;
            }
            field.push(c);
        }
    }
    if quoted {
        return None;
    }
    out.push(field.trim().to_string());
    Some(out)
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

fn shown(value: &Value) -> String {
    cut(&value.to_string())
}

fn describe(cell: &Cell) -> String {
    match cell {
        Cell::Null => "null".into(),
        Cell::Text(t) => format!("\"{}\"", cut(t)),
        Cell::Float(f) => f.to_string(),
        Cell::Int(i) => i.to_string(),
        Cell::Bool(b) => b.to_string(),
    }
}

/// Checks that `cell` fits `field_type`; `Err` quotes the value.
fn check_cell(cell: &Cell, field_type: FieldType) -> Result<(), String> {
    if convert(cell, field_type).is_some() || *cell == Cell::Null {
        Ok(())
    } else {
        Err(describe(cell))
    }
}

/// A typed value for `field_type`, or `None` when the cell does not fit (nulls too).
#[derive(Debug)]
enum Typed {
    String(String),
    Float(f64),
    Int(i64),
    Bool(bool),
}

fn convert(cell: &Cell, field_type: FieldType) -> Option<Typed> {
    Some(match (field_type, cell) {
        (_, Cell::Null) => return None,
        (FieldType::String, Cell::Text(t)) => Typed::String(t.clone()),
        (FieldType::String, Cell::Int(i)) => Typed::String(i.to_string()),
        (FieldType::String, Cell::Float(f)) => Typed::String(f.to_string()),
        (FieldType::String, Cell::Bool(b)) => Typed::String(b.to_string()),
        (FieldType::Float64, Cell::Float(f)) => Typed::Float(*f),
        (FieldType::Float64, Cell::Int(i)) => Typed::Float(*i as f64),
        (FieldType::Float64, Cell::Text(t)) => Typed::Float(t.trim().parse().ok()?),
        (FieldType::Int64, Cell::Int(i)) => Typed::Int(*i),
        (FieldType::Int64, Cell::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Typed::Int(*f as i64)
        }
        (FieldType::Int64, Cell::Text(t)) => Typed::Int(t.trim().parse().ok()?),
        (FieldType::Bool, Cell::Bool(b)) => Typed::Bool(*b),
        (FieldType::Bool, Cell::Text(t)) => {
            Typed::Bool(match t.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "1" => true,
                "false" | "f" | "no" | "0" => false,
                _ => return None,
            })
        }
        (FieldType::TimestampMs, Cell::Int(i)) => Typed::Int(*i),
        (FieldType::TimestampMs, Cell::Text(t)) => Typed::Int(parse_timestamp(t)?),
        _ => return None,
    })
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

fn append(column: &mut ColumnBuilder, field_type: FieldType, cell: Cell) {
    let typed = convert(&cell, field_type);
    match column {
        ColumnBuilder::String(b) => b.append_option(match typed {
            Some(Typed::String(s)) => Some(s),
            _ => None,
        }),
        ColumnBuilder::Float64(b) => b.append_option(match typed {
            Some(Typed::Float(f)) => Some(f),
            _ => None,
        }),
        ColumnBuilder::Int64(b) => b.append_option(match typed {
            Some(Typed::Int(i)) => Some(i),
            _ => None,
        }),
        ColumnBuilder::Bool(b) => b.append_option(match typed {
            Some(Typed::Bool(v)) => Some(v),
            _ => None,
        }),
        ColumnBuilder::Timestamp(b) => b.append_option(match typed {
            Some(Typed::Int(i)) => Some(i),
            _ => None,
        }),
    }
}

/// The schema of a source's `rejected` side output.
pub fn rejected_schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("received_at", timestamp_type(), false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new("payload", DataType::Utf8, false),
        ],
        Some("received_at"),
    )
}

/// Rejected messages waiting to go out, as rows of [`rejected_schema`].
#[derive(Default)]
pub struct RejectedRows {
    received_at: Vec<i64>,
    topic: StringBuilder,
    reason: StringBuilder,
    error: StringBuilder,
    payload: StringBuilder,
}

impl RejectedRows {
    /// Adds one rejected message (the payload as text, invalid UTF-8 replaced by U+FFFD).
    pub fn push(&mut self, received_at: i64, topic: &str, reject: &Reject, payload: &[u8]) {
        self.received_at.push(received_at);
        self.topic.append_value(topic);
        self.reason.append_value(reject.reason);
        self.error.append_value(&reject.detail);
        self.payload.append_value(String::from_utf8_lossy(payload));
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.received_at.len()
    }

    /// True when none are held.
    pub fn is_empty(&self) -> bool {
        self.received_at.is_empty()
    }

    /// The held messages as one batch (`None` when there are none).
    pub fn finish(&mut self) -> Option<RecordBatch> {
        if self.is_empty() {
            return None;
        }
        let times = std::mem::take(&mut self.received_at);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(
                edgeflow_engine::arrow::array::TimestampMillisecondArray::from(times)
                    .with_timezone(UTC),
            ),
            Arc::new(self.topic.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.payload.finish()),
        ];
        RecordBatch::try_new(rejected_schema(), arrays).ok()
    }
}
