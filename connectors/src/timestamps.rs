//! Timestamp columns without time-zone parsing.
//!
//! Our Arrow build has no `chrono-tz` feature, so any kernel that *parses* the time-zone name
//! `"UTC"` fails with "only offset based timezones supported" (casts into a zoned type, CSV
//! and JSON timestamp parsing, display and the JSON writer). Arrow stores every timestamp as
//! an instant since the epoch whatever its zone label, so these helpers convert with zone-less
//! types and then only *relabel* the result:
//!
//! * [`utc_millis`]: any timestamp, integer (epoch ms) or text column → `timestamp_ms` UTC;
//! * [`with_offset_labels`]: UTC columns relabelled `+00:00`, which formatters understand.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{ArrayRef, AsArray, RecordBatch};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{
    DataType, Field, Schema, TimeUnit, TimestampMillisecondType,
};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::{UTC, timestamp_type};

/// Converts `column` to `Timestamp(Millisecond, "UTC")`: timestamps keep their instant,
/// integers are epoch milliseconds, text is parsed (offsets honoured, none means UTC).
///
/// # Errors
/// A type that cannot become a timestamp.
pub fn utc_millis(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if column.data_type() == &timestamp_type() {
        return Ok(column.clone());
    }
    let naive = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    Ok(Arc::new(
        naive
            .as_primitive::<TimestampMillisecondType>()
            .clone()
            .with_timezone(UTC),
    ))
}

/// `rows` with every timestamp column zoned `"UTC"` relabelled `"+00:00"` (the same instants),
/// so Arrow's formatters (display, JSON writer) can print them.
pub fn with_offset_labels(rows: &RecordBatch) -> RecordBatch {
    let is_utc =
        |t: &DataType| matches!(t, DataType::Timestamp(_, Some(zone)) if zone.as_ref() == UTC);
    if !rows.schema().fields().iter().any(|f| is_utc(f.data_type())) {
        return rows.clone();
    }
    let mut fields = Vec::with_capacity(rows.num_columns());
    let mut columns = Vec::with_capacity(rows.num_columns());
    for (field, column) in rows.schema().fields().iter().zip(rows.columns()) {
        let DataType::Timestamp(unit, Some(_)) = field.data_type() else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        };
        if !is_utc(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let zone = "+00:00";
        let relabelled: ArrayRef = match unit {
            TimeUnit::Second => Arc::new(
                column
                    .as_primitive::<edgeflow_engine::arrow::datatypes::TimestampSecondType>()
                    .clone()
                    .with_timezone(zone),
            ),
            TimeUnit::Millisecond => Arc::new(
                column
                    .as_primitive::<TimestampMillisecondType>()
                    .clone()
                    .with_timezone(zone),
            ),
            TimeUnit::Microsecond => Arc::new(
                column
                    .as_primitive::<edgeflow_engine::arrow::datatypes::TimestampMicrosecondType>()
                    .clone()
                    .with_timezone(zone),
            ),
            TimeUnit::Nanosecond => Arc::new(
                column
                    .as_primitive::<edgeflow_engine::arrow::datatypes::TimestampNanosecondType>()
                    .clone()
                    .with_timezone(zone),
            ),
        };
        fields.push(
            Field::new(
                field.name(),
                relabelled.data_type().clone(),
                field.is_nullable(),
            )
            .with_metadata(field.metadata().clone()),
        );
        columns.push(relabelled);
    }
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        rows.schema().metadata().clone(),
    ));
    // Same lengths, and each type changed only in its zone label: this cannot fail.
    RecordBatch::try_new(schema, columns).unwrap_or_else(|_| rows.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};

    #[test]
    fn columns_become_utc_milliseconds() {
        let nanos: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![1_500_000_000]).with_timezone("+01:00"));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1_500]));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["1970-01-01T01:00:01.5+01:00"]));
        for column in [nanos, ints, text] {
            let converted = utc_millis(&column).unwrap();
            assert_eq!(converted.data_type(), &timestamp_type());
            assert_eq!(
                converted
                    .as_primitive::<TimestampMillisecondType>()
                    .value(0),
                1_500
            );
        }
    }

    #[test]
    fn utc_labels_become_offsets_for_printing() {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", timestamp_type(), true)]));
        let column: ArrayRef = Arc::new(
            edgeflow_engine::arrow::array::TimestampMillisecondArray::from(vec![0])
                .with_timezone(UTC),
        );
        let rows = RecordBatch::try_new(schema, vec![column]).unwrap();
        let printable = with_offset_labels(&rows);
        assert_eq!(
            printable.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
        );
        let shown = edgeflow_engine::arrow::util::pretty::pretty_format_batches(&[printable])
            .unwrap()
            .to_string();
        assert!(shown.contains("1970-01-01T00:00:00Z"), "{shown}");
    }
}
