//! JSON lines to Arrow: arrow-json on the fast path, serde_json for a single record that fails.
//!
//! Each line is one JSON object. Keys not in the schema are ignored; missing keys and `null`
//! are nulls. Numbers and booleans are accepted in string fields, numeric strings in number
//! fields, and timestamps as epoch-millisecond numbers or date-time strings.
//!
//! A line that is not JSON, or not an object, is `malformed_json`; an object with a value that
//! does not fit its field is `wrong_type`.

use std::sync::Arc;

use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::arrow::json::ReaderBuilder;
use edgeflow_engine::arrow::json::reader::Decoder;
use edgeflow_engine::schema::FieldType;

use super::csv::conform;
use super::decode::{RecordDecoder, Reject};
use super::lenient::{Cell, one_row};

/// Decodes JSON lines into batches of `schema`.
pub(crate) struct JsonDecoder {
    schema: SchemaRef,
    types: Vec<FieldType>,
    max_records: usize,
    fast: Option<Decoder>,
}

impl JsonDecoder {
    /// A decoder for `schema` whose field types are `types`, for slices of at most
    /// `max_records` records.
    pub(crate) fn new(schema: SchemaRef, types: Vec<FieldType>, max_records: usize) -> Self {
        Self {
            schema,
            types,
            max_records: max_records.max(1),
            fast: None,
        }
    }

    fn fast_decoder(&self) -> Result<Decoder, ArrowError> {
        // Timestamps are read zone-less and relabelled UTC: arrow cannot parse the zone name
        // "UTC" (see `timestamps`).
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Timestamp(unit, Some(_)) => {
                    Field::new(field.name(), DataType::Timestamp(*unit, None), true)
                }
                _ => field.as_ref().clone(),
            })
            .collect();
        ReaderBuilder::new(Arc::new(Schema::new(fields)))
            .with_batch_size(self.max_records)
            .with_coerce_primitive(true)
            .build_decoder()
    }
}

impl RecordDecoder for JsonDecoder {
    fn decode(&mut self, bytes: &[u8], records: usize) -> Result<RecordBatch, ArrowError> {
        if records > self.max_records {
            return Err(ArrowError::JsonError("slice too large".into()));
        }
        let mut decoder = match self.fast.take() {
            Some(decoder) => decoder,
            None => self.fast_decoder()?,
        };
        let mut offset = 0;
        while offset < bytes.len() {
            let read = decoder.decode(&bytes[offset..])?;
            if read == 0 {
                break;
            }
            offset += read;
        }
        if offset < bytes.len() || decoder.len() != records {
            // More (or fewer) values than lines: a line holds several values or none; let the
            // line-by-line path sort it out. The decoder is dropped with its state.
            return Err(ArrowError::JsonError("values do not match lines".into()));
        }
        let batch = decoder.flush()?;
        self.fast = Some(decoder);
        let batch = batch.ok_or_else(|| ArrowError::JsonError("no record in the input".into()))?;
        conform(&batch, &self.schema)
    }

    fn rescue(&mut self, record: &[u8]) -> Result<RecordBatch, Reject> {
        let value: serde_json::Value = serde_json::from_slice(record).map_err(|error| Reject {
            reason: "malformed_json",
            message: format!("invalid JSON: {error}"),
        })?;
        let Some(object) = value.as_object() else {
            return Err(Reject {
                reason: "malformed_json",
                message: format!("expected a JSON object, found {}", kind(&value)),
            });
        };
        let cells: Vec<Cell<'_>> = self
            .schema
            .fields()
            .iter()
            .map(|field| match object.get(field.name()) {
                None | Some(serde_json::Value::Null) => Cell::Null,
                Some(serde_json::Value::String(text)) => Cell::Text(text),
                Some(other) => Cell::Json(other),
            })
            .collect();
        one_row(&self.schema, &self.types, &cells).map_err(|message| Reject {
            reason: "wrong_type",
            message,
        })
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_options::{SchemaSpec, resolve_schema};
    use edgeflow_engine::arrow::array::{Array, AsArray};
    use edgeflow_engine::arrow::datatypes::TimestampMillisecondType;

    fn decoder() -> JsonDecoder {
        let resolved = resolve_schema(
            &SchemaSpec::new([("id", "string"), ("ts", "timestamp_ms"), ("t", "float64")]),
            None,
        )
        .unwrap();
        let types = resolved.fields.iter().map(|(_, t)| *t).collect();
        JsonDecoder::new(resolved.schema, types, 100)
    }

    #[test]
    fn lines_decode_with_both_timestamp_forms() {
        let mut json = decoder();
        let rows = json
            .decode(
                b"{\"id\":\"a\",\"ts\":1704067200000,\"t\":1.5,\"extra\":[1]}\n\
                  {\"id\":7,\"ts\":\"2024-01-01T00:00:01Z\"}\n",
                2,
            )
            .unwrap();
        let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.values().as_ref(), [1_704_067_200_000, 1_704_067_201_000]);
        assert_eq!(rows.column(0).as_string::<i32>().value(1), "7");
        assert!(rows.column(2).is_null(1));
    }

    #[test]
    fn rescue_tells_malformed_json_from_wrong_types() {
        let mut json = decoder();
        let reject = json.rescue(b"{\"id\": \"a\", \"ts\": \n").unwrap_err();
        assert_eq!(reject.reason, "malformed_json");
        let reject = json.rescue(b"[1, 2]\n").unwrap_err();
        assert_eq!(reject.reason, "malformed_json");
        assert_eq!(reject.message, "expected a JSON object, found an array");
        let reject = json.rescue(b"{\"ts\": 5, \"t\": true}\n").unwrap_err();
        assert_eq!(reject.reason, "wrong_type");
        assert_eq!(reject.message, "value true of field 't' is not a float64");
        let reject = json.rescue(b"{\"ts\": \"later\"}\n").unwrap_err();
        assert_eq!(reject.reason, "wrong_type");
        assert!(json.decode(b"{\"ts\": 1} {\"ts\": 2}\n", 1).is_err());
        assert!(json.decode(b"{\"ts\": 1, \"t\": \"x\"}\n", 1).is_err());
        assert_eq!(
            json.decode(b"{\"ts\": 1, \"t\": \"2.5\"}\n", 1)
                .unwrap()
                .num_rows(),
            1
        );
    }
}
