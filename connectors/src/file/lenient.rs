//! Converts the values of one record, field by field, with an error naming the field at fault.
//!
//! The fast path decodes thousands of rows at once with arrow-csv or arrow-json and fails the
//! whole slice on any bad value. For a single record that failed, these converters decide what
//! is wrong with it (or rescue it: a timestamp written as epoch milliseconds in a file whose
//! first row used RFC 3339 is fine here).

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use edgeflow_engine::arrow::compute::kernels::cast_utils::string_to_datetime;
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::schema::{FieldType, UTC};

/// One value of a record, as read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cell<'a> {
    /// Absent, empty or `null`.
    Null,
    /// A CSV field or a JSON string.
    Text(&'a str),
    /// Any other JSON value.
    Json(&'a serde_json::Value),
}

/// Parses a timestamp written as epoch milliseconds or as a date-time (RFC 3339; a time
/// without an offset is taken as UTC).
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    string_to_datetime(&chrono::Utc, text)
        .ok()
        .map(|moment| moment.timestamp_millis())
}

/// Parses a boolean: `true`/`false`, `t`/`f`, `yes`/`no`, `1`/`0`, any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

fn describe(cell: Cell<'_>) -> String {
    match cell {
        Cell::Null => "null".into(),
        Cell::Text(text) => format!("'{text}'"),
        Cell::Json(value) => {
            let mut shown = value.to_string();
            if shown.len() > 40 {
                let mut cut = 40;
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                shown.push('…');
            }
            shown
        }
    }
}

fn one(field_type: FieldType, cell: Cell<'_>) -> Result<ArrayRef, ()> {
    use serde_json::Value;
    let text = match cell {
        Cell::Text(text) => Some(text),
        Cell::Json(Value::String(text)) => Some(text.as_str()),
        _ => None,
    };
    let is_null = matches!(cell, Cell::Null | Cell::Json(Value::Null));
    Ok(match field_type {
        FieldType::String => {
            let value = match cell {
                _ if is_null => None,
                Cell::Json(Value::Number(n)) => Some(n.to_string()),
                Cell::Json(Value::Bool(b)) => Some(b.to_string()),
                _ => Some(text.ok_or(())?.to_string()),
            };
            Arc::new(StringArray::from(vec![value]))
        }
        FieldType::Float64 => {
            let value = match cell {
                _ if is_null => None,
                Cell::Json(Value::Number(n)) => Some(n.as_f64().ok_or(())?),
                _ => Some(text.ok_or(())?.trim().parse::<f64>().map_err(|_| ())?),
            };
            Arc::new(Float64Array::from(vec![value]))
        }
        FieldType::Int64 => {
            let value = match cell {
                _ if is_null => None,
                Cell::Json(Value::Number(n)) => Some(n.as_i64().ok_or(())?),
                _ => Some(text.ok_or(())?.trim().parse::<i64>().map_err(|_| ())?),
            };
            Arc::new(Int64Array::from(vec![value]))
        }
        FieldType::Bool => {
            let value = match cell {
                _ if is_null => None,
                Cell::Json(Value::Bool(b)) => Some(*b),
                _ => Some(parse_bool(text.ok_or(())?).ok_or(())?),
            };
            Arc::new(BooleanArray::from(vec![value]))
        }
        FieldType::TimestampMs => {
            let value = match cell {
                _ if is_null => None,
                Cell::Json(Value::Number(n)) => Some(n.as_i64().ok_or(())?),
                _ => Some(parse_timestamp(text.ok_or(())?).ok_or(())?),
            };
            Arc::new(TimestampMillisecondArray::from(vec![value]).with_timezone(UTC))
        }
        // Types added to the engine later are not read from text files yet.
        _ => return Err(()),
    })
}

/// Builds a one-row batch from `cells` (one per field of `schema`).
///
/// # Errors
/// A message naming the first value that does not fit its field's type.
pub(crate) fn one_row(
    schema: &SchemaRef,
    types: &[FieldType],
    cells: &[Cell<'_>],
) -> Result<RecordBatch, String> {
    let mut columns = Vec::with_capacity(types.len());
    for ((field, field_type), cell) in schema.fields().iter().zip(types).zip(cells) {
        let column = one(*field_type, *cell).map_err(|()| {
            format!(
                "value {} of field '{}' is not a {field_type}",
                describe(*cell),
                field.name()
            )
        })?;
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_options::{SchemaSpec, resolve_schema};
    use edgeflow_engine::arrow::array::{Array, AsArray};
    use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;

    #[test]
    fn timestamps_are_epoch_ms_or_date_times() {
        assert_eq!(parse_timestamp("1704067200000"), Some(1_704_067_200_000));
        assert_eq!(parse_timestamp("-5"), Some(-5));
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00Z"),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_timestamp("2024-01-01T01:00:00.5+01:00"),
            Some(1_704_067_200_500)
        );
        assert_eq!(
            parse_timestamp("2024-01-01 00:00:00"),
            Some(1_704_067_200_000)
        );
        assert_eq!(parse_timestamp("soon"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn one_row_converts_or_names_the_bad_field() {
        let resolved = resolve_schema(
            &SchemaSpec::new([
                ("id", "string"),
                ("ts", "timestamp_ms"),
                ("t", "float64"),
                ("n", "int64"),
                ("ok", "bool"),
            ]),
            None,
        )
        .unwrap();
        let types: Vec<FieldType> = resolved.fields.iter().map(|(_, t)| *t).collect();
        let number = serde_json::json!(7);
        let row = one_row(
            &resolved.schema,
            &types,
            &[
                Cell::Json(&number),
                Cell::Text("1704067200000"),
                Cell::Text(" 21.5 "),
                Cell::Null,
                Cell::Text("yes"),
            ],
        )
        .unwrap();
        assert_eq!(row.column(0).as_string::<i32>().value(0), "7");
        let ts = row.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_704_067_200_000);
        assert!(row.column(3).is_null(0));

        let error = one_row(
            &resolved.schema,
            &types,
            &[
                Cell::Text("a"),
                Cell::Text("2024-01-01T00:00:00Z"),
                Cell::Text("warm"),
                Cell::Null,
                Cell::Null,
            ],
        )
        .unwrap_err();
        assert_eq!(error, "value 'warm' of field 't' is not a float64");
        let yes = serde_json::json!(true);
        let error = one_row(
            &resolved.schema,
            &types,
            &[
                Cell::Null,
                Cell::Null,
                Cell::Json(&yes),
                Cell::Null,
                Cell::Null,
            ],
        )
        .unwrap_err();
        assert_eq!(error, "value true of field 't' is not a float64");
    }
}
