//! Field types as query files spell them, and helpers for the event-time column.
//!
//! Query files declare schemas with short type names (`string`, `float64`, `timestamp_ms`, …).
//! [`FieldType`] maps them to Arrow types. Timestamps are always stored as
//! `Timestamp(Millisecond, "UTC")`, so Parquet readers see a UTC instant.
//!
//! A node's output schema names its event-time column in the schema metadata under
//! [`EVENT_TIME_KEY`]; [`event_time_column`] reads it back.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};

use crate::time::EventTime;

/// Schema metadata key naming the event-time column of a node's output.
pub const EVENT_TIME_KEY: &str = "edgeflow.event_time";

/// The time zone every timestamp column carries.
pub const UTC: &str = "UTC";

/// The Arrow type of every timestamp column: milliseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
}

/// A field type as written in a query file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldType {
    /// UTF-8 text (`string`).
    String,
    /// 64-bit float (`float64`, alias `double`, `float`).
    Float64,
    /// 64-bit signed integer (`int64`, alias `int`, `integer`).
    Int64,
    /// Boolean (`bool`, alias `boolean`).
    Bool,
    /// Timestamp in milliseconds since the epoch, UTC (`timestamp_ms`, alias `timestamp`).
    TimestampMs,
}

impl FieldType {
    /// Every type with its canonical name, for help texts and suggestions.
    pub const ALL: [(&'static str, FieldType); 5] = [
        ("string", FieldType::String),
        ("float64", FieldType::Float64),
        ("int64", FieldType::Int64),
        ("bool", FieldType::Bool),
        ("timestamp_ms", FieldType::TimestampMs),
    ];

    /// Parses a type name (canonical names and common aliases).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "utf8" | "text" => Self::String,
            "float64" | "double" | "float" | "f64" => Self::Float64,
            "int64" | "int" | "integer" | "i64" | "long" => Self::Int64,
            "bool" | "boolean" => Self::Bool,
            "timestamp_ms" | "timestamp" => Self::TimestampMs,
            _ => return None,
        })
    }

    /// The Arrow type rows of this field are stored as.
    pub fn data_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Float64 => DataType::Float64,
            Self::Int64 => DataType::Int64,
            Self::Bool => DataType::Boolean,
            Self::TimestampMs => timestamp_type(),
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(n, _)| n)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A short, query-file style name for an Arrow type (for `explain` and messages).
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Float64 => "float64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Boolean => "bool".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp_ms".into(),
        other => other.to_string(),
    }
}

/// Builds a schema from `(name, type)` pairs, marking `event_time` as the event-time column.
pub fn schema_with_event_time(
    fields: impl IntoIterator<Item = Field>,
    event_time: Option<&str>,
) -> SchemaRef {
    let metadata: HashMap<String, String> = event_time
        .map(|name| (EVENT_TIME_KEY.to_string(), name.to_string()))
        .into_iter()
        .collect();
    Arc::new(Schema::new_with_metadata(
        fields.into_iter().collect::<Vec<_>>(),
        metadata,
    ))
}

/// The event-time column named in `schema`'s metadata, as `(index, name)`.
pub fn event_time_column(schema: &Schema) -> Option<(usize, &str)> {
    let name = schema.metadata().get(EVENT_TIME_KEY)?;
    let index = schema.index_of(name).ok()?;
    Some((index, name.as_str()))
}

/// The largest non-null value of a millisecond timestamp column, if any.
pub fn max_event_time(rows: &RecordBatch, column: usize) -> Option<EventTime> {
    let array = rows.column(column);
    let times = array.as_primitive_opt::<TimestampMillisecondType>()?;
    arrow::compute::max(times).map(|t| t.max(0) as EventTime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;

    #[test]
    fn type_names_round_trip() {
        for (name, field_type) in FieldType::ALL {
            assert_eq!(FieldType::parse(name), Some(field_type));
            assert_eq!(field_type.name(), name);
            assert_eq!(type_name(&field_type.data_type()), name);
        }
        assert_eq!(FieldType::parse("Double"), Some(FieldType::Float64));
        assert_eq!(FieldType::parse("float128"), None);
    }

    #[test]
    fn event_time_column_is_found_through_metadata() {
        let schema = schema_with_event_time(
            [
                Field::new("v", DataType::Float64, true),
                Field::new("ts", timestamp_type(), false),
            ],
            Some("ts"),
        );
        assert_eq!(event_time_column(&schema), Some((1, "ts")));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.0])),
                Arc::new(TimestampMillisecondArray::from(vec![5, 9]).with_timezone(UTC)),
            ],
        )
        .unwrap();
        assert_eq!(max_event_time(&rows, 1), Some(9));
    }
}
