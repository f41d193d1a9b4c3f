//! Shared option checks: finding a field of the input schema (with "did you mean"), classifying
//! field types, and building [`OptionError`]s whose path segments may contain dots.

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema};
use edgeflow_engine::config::closest_name;

/// An error at a path given segment by segment (a key such as `"a.b"` stays one segment,
/// unlike [`OptionError::at`], which splits on dots).
pub(crate) fn error_at(path: &[&str], message: impl Into<String>) -> OptionError {
    OptionError {
        path: path.iter().map(|s| (*s).to_string()).collect(),
        message: message.into(),
        hint: None,
    }
}

/// The index and field named `name` in `schema`, or an error at `path` saying it does not
/// exist, with the closest field name as a hint (or the list of fields when none is close).
pub(crate) fn lookup<'a>(
    schema: &'a Schema,
    name: &str,
    path: &[&str],
) -> Result<(usize, &'a Field), OptionError> {
    if let Ok(index) = schema.index_of(name) {
        return Ok((index, schema.field(index)));
    }
    let names = schema.fields().iter().map(|f| f.name().as_str());
    let error = error_at(path, format!("'{name}' is not a field of the input"));
    Err(match closest_name(name, names.clone()) {
        Some(best) => error.with_hint(format!("did you mean '{best}'?")),
        None => error.with_hint(format!(
            "the input's fields are: {}",
            names.collect::<Vec<_>>().join(", ")
        )),
    })
}

/// How the operators compute with a numeric column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Numeric {
    /// Float32 or Float64, computed as `f64` (NaN counts as missing).
    Float,
    /// A signed integer, or an unsigned one of at most 32 bits, computed as `i64`.
    Int,
}

/// The numeric class of `data_type`, if the operators can compute with it.
///
/// `UInt64` is left out on purpose: it does not fit `i64`, and no query-file type produces it.
pub(crate) fn numeric(data_type: &DataType) -> Option<Numeric> {
    match data_type {
        DataType::Float32 | DataType::Float64 => Some(Numeric::Float),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => Some(Numeric::Int),
        _ => None,
    }
}

/// The query-file name of a type, for messages (`string`, `float64`, …).
pub(crate) fn type_name(data_type: &DataType) -> String {
    edgeflow_engine::schema::type_name(data_type)
}

/// The one input schema of a single-input operator, or an error at `inputs`.
pub(crate) fn single_input<'a>(
    kind: &str,
    inputs: &'a [edgeflow_engine::arrow::datatypes::SchemaRef],
) -> Result<&'a Schema, OptionError> {
    match inputs {
        [one] => Ok(one.as_ref()),
        _ => Err(OptionError::at(
            "inputs",
            format!(
                "a '{kind}' operator reads exactly one input, but {} are listed",
                inputs.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("temperature", DataType::Float64, true),
            Field::new("device_id", DataType::Utf8, false),
        ])
    }

    #[test]
    fn lookup_suggests_a_close_name_or_lists_fields() {
        let schema = schema();
        assert_eq!(lookup(&schema, "device_id", &["x"]).unwrap().0, 1);
        let error = lookup(&schema, "temprature", &["drop_null", "0"]).unwrap_err();
        assert_eq!(error.path, ["drop_null", "0"]);
        assert_eq!(error.message, "'temprature' is not a field of the input");
        assert_eq!(error.hint.as_deref(), Some("did you mean 'temperature'?"));
        let error = lookup(&schema, "pressure", &["a.b"]).unwrap_err();
        assert_eq!(error.path, ["a.b"]);
        assert_eq!(
            error.hint.as_deref(),
            Some("the input's fields are: temperature, device_id")
        );
    }

    #[test]
    fn numeric_classes() {
        assert_eq!(numeric(&DataType::Float32), Some(Numeric::Float));
        assert_eq!(numeric(&DataType::UInt32), Some(Numeric::Int));
        assert_eq!(numeric(&DataType::UInt64), None);
        assert_eq!(numeric(&DataType::Utf8), None);
    }
}
