//! Reading Parquet files with the parquet crate's Arrow reader.
//!
//! Without a `schema` option, the source takes the first file's columns, in file order, with
//! types made uniform: every timestamp becomes `timestamp_ms` UTC, smaller integers `int64`,
//! smaller floats `float64`, and large or dictionary strings `string`. The event-time column
//! may also be an integer column of epoch milliseconds. With a `schema`, only the named
//! columns are read (by name) and cast to the declared types.

use std::fs::File;
use std::path::Path;

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::array::{ArrayRef, RecordBatch};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::schema::{schema_with_event_time, timestamp_type, type_name};

use crate::error::{ConnectorError, parquet_reason};
use crate::timestamps::utc_millis;

/// The Arrow schema stored in a Parquet file.
///
/// # Errors
/// The file cannot be opened or is not Parquet.
pub(crate) fn file_schema(path: &Path) -> Result<SchemaRef, ConnectorError> {
    let file = File::open(path).map_err(|error| ConnectorError::open_input(path, &error))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|error| ConnectorError::read_input(path, parquet_reason(&error)))?;
    Ok(builder.schema().clone())
}

/// The type a column of `data_type` is read as.
fn uniform_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(_, _) => timestamp_type(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DataType::Int64,
        DataType::Float16 | DataType::Float32 => DataType::Float64,
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Dictionary(_, value)
            if matches!(
                value.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            DataType::Utf8
        }
        other => other.clone(),
    }
}

/// The source schema taken from a file's own schema (see the module docs).
///
/// # Errors
/// The event-time column is missing, ambiguous, or not a timestamp or integer column.
pub(crate) fn derive_schema(
    file_schema: &Schema,
    file: &Path,
    event_time: Option<&str>,
) -> Result<(SchemaRef, usize), OptionError> {
    let names = || file_schema.fields().iter().map(|f| f.name().as_str());
    let index = match event_time {
        Some(wanted) => file_schema.index_of(wanted).map_err(|_| {
            OptionError::at(
                "event_time",
                format!("'{wanted}' is not a column of '{}'", file.display()),
            )
            .suggest(wanted, names())
        })?,
        None => {
            let timestamps: Vec<usize> = (0..file_schema.fields().len())
                .filter(|&i| matches!(file_schema.field(i).data_type(), DataType::Timestamp(..)))
                .collect();
            match timestamps.as_slice() {
                [only] => *only,
                _ => {
                    return Err(OptionError::at(
                        "event_time",
                        format!(
                            "name the event-time column of '{}' (it has {} timestamp columns), like event_time = \"ts\"",
                            file.display(),
                            timestamps.len()
                        ),
                    ));
                }
            }
        }
    };
    let event_field = file_schema.field(index);
    let usable = matches!(uniform_type(event_field.data_type()), DataType::Int64)
        || matches!(event_field.data_type(), DataType::Timestamp(..));
    if !usable {
        return Err(OptionError::at(
            "event_time",
            format!(
                "column '{}' of '{}' is {}; the event-time column must be a timestamp or an integer of epoch milliseconds",
                event_field.name(),
                file.display(),
                type_name(event_field.data_type())
            ),
        ));
    }
    let fields = file_schema.fields().iter().enumerate().map(|(i, field)| {
        let data_type = if i == index {
            timestamp_type()
        } else {
            uniform_type(field.data_type())
        };
        Field::new(field.name(), data_type, true)
    });
    Ok((
        schema_with_event_time(fields, Some(event_field.name())),
        index,
    ))
}

/// Reads `path` in batches of `batch_rows` rows of `target` (columns found by name and cast
/// to the target types), handing each to `emit`. Stops early when `emit` returns false;
/// returns false then.
///
/// # Errors
/// The file cannot be opened or read, or lacks a column of `target`.
pub(crate) fn read_file(
    path: &Path,
    target: &SchemaRef,
    batch_rows: usize,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<bool, ConnectorError> {
    let file = File::open(path).map_err(|error| ConnectorError::open_input(path, &error))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|error| ConnectorError::read_input(path, parquet_reason(&error)))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let index = file_schema.index_of(field.name()).map_err(|_| {
            ConnectorError::read_input(path, format!("it has no column '{}'", field.name()))
        })?;
        roots.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|error| ConnectorError::read_input(path, parquet_reason(&error)))?;
    for batch in reader {
        let batch = batch.map_err(|error| ConnectorError::read_input(path, error))?;
        let rows =
            conform(&batch, target).map_err(|error| ConnectorError::read_input(path, error))?;
        if !emit(rows) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `batch` with the columns of `target`, in its order and types.
fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, String> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| format!("it has no column '{}'", field.name()))?;
        let converted = if column.data_type() == field.data_type() {
            Ok(column.clone())
        } else if field.data_type() == &timestamp_type() {
            utc_millis(column)
        } else {
            cast(column, field.data_type())
        };
        let column = converted.map_err(|error| {
            format!(
                "column '{}' ({}) cannot be read as {}: {error}",
                field.name(),
                type_name(column.data_type()),
                type_name(field.data_type())
            )
        })?;
        columns.push(column);
    }
    RecordBatch::try_new(target.clone(), columns).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::datatypes::TimeUnit;

    #[test]
    fn file_types_become_uniform() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::LargeUtf8, false),
            Field::new("t", DataType::Float32, true),
            Field::new("n", DataType::Int32, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]);
        let (derived, index) = derive_schema(&schema, Path::new("x.parquet"), None).unwrap();
        assert_eq!(index, 3);
        let types: Vec<String> = derived
            .fields()
            .iter()
            .map(|f| type_name(f.data_type()))
            .collect();
        assert_eq!(types, ["string", "float64", "int64", "timestamp_ms"]);

        let (derived, index) = derive_schema(&schema, Path::new("x.parquet"), Some("n")).unwrap();
        assert_eq!(index, 2);
        assert_eq!(derived.field(2).data_type(), &timestamp_type());

        let error = derive_schema(&schema, Path::new("x.parquet"), Some("t")).unwrap_err();
        assert!(error.message.contains("float32"), "{error}");
        let error = derive_schema(&schema, Path::new("x.parquet"), Some("tt")).unwrap_err();
        assert_eq!(error.hint.as_deref(), Some("did you mean 't'?"));
        let plain = Schema::new(vec![Field::new("v", DataType::Float64, true)]);
        assert!(derive_schema(&plain, Path::new("x.parquet"), None).is_err());
    }
}
