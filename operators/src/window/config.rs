//! [`WindowConfig`]: the options of a `window` operator, and their checks against the input
//! schema, which produce the [`WindowPlan`] every worker runs.

use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use edgeflow_engine::schema::{event_time_column, schema_with_event_time, timestamp_type};
use serde::Deserialize;

use super::expr::{AggregateFunction, parse_aggregate};
use crate::fields::{Numeric, error_at, lookup, numeric, single_input, type_name};
use crate::options::OrderedMap;

/// Name of the output column holding each window's start (also its event-time column).
pub const WINDOW_START: &str = "window_start";
/// Name of the output column holding each window's end (exclusive).
pub const WINDOW_END: &str = "window_end";

/// The window kinds the options accept; only the first is implemented.
const KINDS: [&str; 4] = ["tumbling", "sliding", "hopping", "session"];

fn default_kind() -> String {
    KINDS[0].to_string()
}

/// Options of a `window` operator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Window kind. Only `"tumbling"` is supported for now: fixed-size, non-overlapping
    /// windows aligned to the Unix epoch. Default: `"tumbling"`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Window length, such as `"10s"`, `"500ms"` or `"5m"`: at least 1 ms and a whole number of
    /// milliseconds. Required. Kept as text and checked when planning, so that a bad size is
    /// reported together with every other bad option (see [`WindowConfig::size`]).
    pub size: String,
    /// Fields whose values split each window into groups (one output row per window and
    /// distinct key; null is a key value of its own). String, integer and bool fields.
    /// Default: none (one row per window).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Output column name → aggregate: `count()`, `count(field)`, `sum(field)`,
    /// `mean(field)`, `min(field)` or `max(field)`. Columns appear in this order after the
    /// window bounds and group keys. Default: none.
    #[serde(default)]
    pub aggregates: OrderedMap<String>,
}

/// One aggregate of the plan.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AggregateSpec {
    /// The function.
    pub function: AggregateFunction,
    /// The input column it reads (`None` for `count()`).
    pub column: Option<usize>,
    /// How the input column is computed with (`None` for `count()` and for `count` of a
    /// non-numeric field).
    pub numeric: Option<Numeric>,
    /// The output column's type.
    pub output_type: DataType,
}

/// Everything a worker needs to run the window.
#[derive(Clone, Debug)]
pub(crate) struct WindowPlan {
    /// Window length in milliseconds (at least 1).
    pub size_ms: i64,
    /// Index of the input's event-time column.
    pub event_time: usize,
    /// Indices of the group-key columns, in `group_by` order.
    pub keys: Vec<usize>,
    /// The group-key fields (as in the input schema).
    pub key_fields: Vec<FieldRef>,
    /// The aggregates, in file order.
    pub aggregates: Vec<AggregateSpec>,
    /// `window_start, window_end, keys…, aggregates…`; event time is `window_start`.
    pub output_schema: SchemaRef,
}

fn key_type_supported(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

impl WindowConfig {
    /// The window length, if `size` is a valid duration.
    ///
    /// # Errors
    /// A message quoting the text.
    pub fn size(&self) -> Result<Duration, String> {
        edgeflow_engine::time::parse_duration(&self.size)
    }

    /// Checks the options against the input schema.
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    pub(crate) fn plan_window(&self, inputs: &[SchemaRef]) -> Result<WindowPlan, Vec<OptionError>> {
        let schema = single_input("window", inputs).map_err(|e| vec![e])?;
        let mut errors = Vec::new();

        if self.kind != KINDS[0] {
            let lower = self.kind.to_ascii_lowercase();
            errors.push(if KINDS[1..].contains(&lower.as_str()) {
                OptionError::at(
                    "kind",
                    format!("window kind '{}' is not supported yet", self.kind),
                )
                .with_hint("only 'tumbling' windows are available for now")
            } else {
                OptionError::at("kind", format!("unknown window kind '{}'", self.kind))
                    .suggest(&self.kind, KINDS[..1].iter().copied())
            });
        }

        let mut size_ms = 0;
        match self.size() {
            Err(message) => errors.push(OptionError::at("size", message)),
            Ok(size) if size.is_zero() || !size.subsec_nanos().is_multiple_of(1_000_000) => {
                errors.push(OptionError::at(
                    "size",
                    format!(
                        "window size must be a whole number of milliseconds, at least 1ms, \
                         got '{}'",
                        self.size
                    ),
                ));
            }
            Ok(size) if size.as_millis() > i64::MAX as u128 / 4 => errors.push(OptionError::at(
                "size",
                format!("window size '{}' is too large", self.size),
            )),
            Ok(size) => size_ms = size.as_millis() as i64,
        }

        let event_time = match event_time_column(schema) {
            Some((index, name)) => match schema.field(index).data_type() {
                DataType::Timestamp(TimeUnit::Millisecond, _) => Some(index),
                other => {
                    errors.push(OptionError::at(
                        "",
                        format!(
                            "the input's event-time field '{name}' is {}, not a timestamp",
                            type_name(other)
                        ),
                    ));
                    None
                }
            },
            None => {
                errors.push(
                    OptionError::at("", "the input has no event-time field to window by")
                        .with_hint(
                            "window the output of a source that declares an event-time field",
                        ),
                );
                None
            }
        };

        let mut taken: Vec<(String, &'static str)> = vec![
            (WINDOW_START.into(), "the window start"),
            (WINDOW_END.into(), "the window end"),
        ];
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        for (position, name) in self.group_by.iter().enumerate() {
            let position = position.to_string();
            let path = ["group_by", position.as_str()];
            let (index, field) = match lookup(schema, name, &path) {
                Ok(found) => found,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            if let Some((_, what)) = taken.iter().find(|(t, _)| t == name) {
                errors.push(error_at(
                    &path,
                    format!(
                        "cannot group by '{name}': the output already has {what} under that name"
                    ),
                ));
                continue;
            }
            if !key_type_supported(field.data_type()) {
                errors.push(
                    error_at(
                        &path,
                        format!(
                            "cannot group by {} field '{name}'",
                            type_name(field.data_type())
                        ),
                    )
                    .with_hint("group keys must be string, integer or bool fields"),
                );
                continue;
            }
            taken.push((name.clone(), "a group key"));
            keys.push(index);
            key_fields.push(Arc::new(field.clone()));
        }

        let mut aggregates = Vec::new();
        let mut aggregate_fields = Vec::new();
        for (name, text) in self.aggregates.iter() {
            let path = ["aggregates", name];
            match plan_aggregate(schema, name, text, &path, &taken) {
                Ok((spec, field)) => {
                    taken.push((name.to_string(), "an aggregate"));
                    aggregates.push(spec);
                    aggregate_fields.push(field);
                }
                Err(error) => errors.push(error),
            }
        }

        let Some(event_time) = event_time.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let mut fields = vec![
            Field::new(WINDOW_START, timestamp_type(), false),
            Field::new(WINDOW_END, timestamp_type(), false),
        ];
        fields.extend(key_fields.iter().map(|f| f.as_ref().clone()));
        fields.extend(aggregate_fields);
        Ok(WindowPlan {
            size_ms,
            event_time,
            keys,
            key_fields,
            aggregates,
            output_schema: schema_with_event_time(fields, Some(WINDOW_START)),
        })
    }
}

fn plan_aggregate(
    schema: &Schema,
    name: &str,
    text: &str,
    path: &[&str],
    taken: &[(String, &'static str)],
) -> Result<(AggregateSpec, Field), OptionError> {
    if name.trim().is_empty() {
        return Err(error_at(path, "an aggregate's output column needs a name"));
    }
    if let Some((_, what)) = taken.iter().find(|(t, _)| t == name) {
        return Err(
            error_at(path, format!("output column '{name}' is already {what}"))
                .with_hint("give the aggregate another name"),
        );
    }
    let expr = parse_aggregate(text).map_err(|error| OptionError {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: error.message,
        hint: error.hint,
    })?;
    let function = expr.function;
    let Some(field_name) = expr.field else {
        let spec = AggregateSpec {
            function,
            column: None,
            numeric: None,
            output_type: DataType::Int64,
        };
        return Ok((spec, Field::new(name, DataType::Int64, false)));
    };
    let (column, field) = lookup(schema, &field_name, path)?;
    let class = numeric(field.data_type());
    let output_type = match (function, class) {
        (AggregateFunction::Count, _) => DataType::Int64,
        (AggregateFunction::Sum | AggregateFunction::Mean, Some(_)) => DataType::Float64,
        (AggregateFunction::Min | AggregateFunction::Max, Some(_)) => field.data_type().clone(),
        (_, None) => {
            return Err(error_at(
                path,
                format!(
                    "cannot take {function} of {} field '{field_name}'",
                    type_name(field.data_type())
                ),
            )
            .with_hint(format!("{function} takes numeric (int or float) fields")));
        }
    };
    let nullable = function != AggregateFunction::Count;
    let spec = AggregateSpec {
        function,
        column: Some(column),
        numeric: class,
        output_type: output_type.clone(),
    };
    Ok((spec, Field::new(name, output_type, nullable)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::parse_options;

    pub(crate) fn input() -> SchemaRef {
        schema_with_event_time(
            [
                Field::new("device_id", DataType::Utf8, false),
                Field::new("ts", timestamp_type(), false),
                Field::new("temperature", DataType::Float64, true),
                Field::new("level", DataType::Int32, true),
                Field::new("ok", DataType::Boolean, true),
            ],
            Some("ts"),
        )
    }

    fn config(text: &str) -> Result<WindowConfig, OptionError> {
        parse_options(text.parse::<toml::Table>().unwrap())
    }

    fn errors(text: &str) -> Vec<(String, String, Option<String>)> {
        config(text)
            .unwrap()
            .plan_window(&[input()])
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path.join("."), e.message, e.hint))
            .collect()
    }

    const EXAMPLE: &str = "kind = \"tumbling\"\nsize = \"10s\"\ngroup_by = [\"device_id\"]\n\
        aggregates = { temp_avg = \"mean(temperature)\", temp_max = \"max(temperature)\", \
        n = \"count()\" }";

    #[test]
    fn query_file_example_plans() {
        let config = config(EXAMPLE).unwrap();
        assert_eq!(config.size(), Ok(Duration::from_secs(10)));
        let plan = config.plan_window(&[input()]).unwrap();
        assert_eq!(plan.size_ms, 10_000);
        assert_eq!(plan.event_time, 1);
        assert_eq!(plan.keys, [0]);
        let schema = plan.output_schema;
        let columns: Vec<(&str, &DataType, bool)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            columns,
            [
                ("window_start", &timestamp_type(), false),
                ("window_end", &timestamp_type(), false),
                ("device_id", &DataType::Utf8, false),
                ("temp_avg", &DataType::Float64, true),
                ("temp_max", &DataType::Float64, true),
                ("n", &DataType::Int64, false),
            ]
        );
        assert_eq!(event_time_column(&schema), Some((0, WINDOW_START)));
    }

    #[test]
    fn output_types_follow_the_function() {
        let config = config(
            "size = \"1s\"\naggregates = { a = \"min(level)\", b = \"sum(level)\", \
             c = \"count(device_id)\", d = \"max(temperature)\" }",
        )
        .unwrap();
        let plan = config.plan_window(&[input()]).unwrap();
        assert_eq!(config.kind, "tumbling");
        let types: Vec<&DataType> = plan.output_schema.fields()[2..]
            .iter()
            .map(|f| f.data_type())
            .collect();
        assert_eq!(
            types,
            [
                &DataType::Int32,
                &DataType::Float64,
                &DataType::Int64,
                &DataType::Float64
            ]
        );
    }

    #[test]
    fn every_bad_option_is_reported_with_path_and_hint() {
        let found = errors(
            "kind = \"sliding\"\nsize = \"10s\"\ngroup_by = [\"devce_id\", \"temperature\"]\n\
             aggregates = { a = \"avg(temperature)\", b = \"max(temprature)\", \
             c = \"mean(device_id)\", d = \"count\" }",
        );
        let expected = [
            (
                "kind",
                "window kind 'sliding' is not supported yet",
                Some("only 'tumbling' windows are available for now"),
            ),
            (
                "group_by.0",
                "'devce_id' is not a field of the input",
                Some("did you mean 'device_id'?"),
            ),
            (
                "group_by.1",
                "cannot group by float64 field 'temperature'",
                Some("group keys must be string, integer or bool fields"),
            ),
            (
                "aggregates.a",
                "unknown aggregate function 'avg'",
                Some("did you mean 'mean'?"),
            ),
            (
                "aggregates.b",
                "'temprature' is not a field of the input",
                Some("did you mean 'temperature'?"),
            ),
            (
                "aggregates.c",
                "cannot take mean of string field 'device_id'",
                Some("mean takes numeric (int or float) fields"),
            ),
            (
                "aggregates.d",
                "'count' is missing its parentheses",
                Some("write 'count()'"),
            ),
        ];
        let expected: Vec<(String, String, Option<String>)> = expected
            .into_iter()
            .map(|(p, m, h)| (p.into(), m.into(), h.map(Into::into)))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn kind_typos_and_sizes() {
        let found = errors("kind = \"tumbing\"\nsize = \"0s\"");
        assert_eq!(found[0].0, "kind");
        assert_eq!(found[0].1, "unknown window kind 'tumbing'");
        assert_eq!(found[0].2.as_deref(), Some("did you mean 'tumbling'?"));
        assert_eq!(found[1].0, "size");
        assert!(found[1].1.contains("at least 1ms"), "{}", found[1].1);

        let found = errors("size = \"1500us\"");
        assert_eq!(found[0].0, "size");

        let found = errors("size = \"ten seconds\"\ngroup_by = [\"devce_id\"]");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "size");
        assert!(found[0].1.contains("'ten seconds'"), "{}", found[0].1);
        assert_eq!(found[1].0, "group_by.0");

        let error = config("kind = \"tumbling\"").unwrap_err();
        assert!(error.message.contains("size"), "{}", error.message);
    }

    #[test]
    fn output_names_must_be_unique() {
        let found = errors(
            "size = \"1s\"\ngroup_by = [\"device_id\"]\n\
             aggregates = { device_id = \"count()\", window_end = \"count()\", \"a.b\" = \"count()\" }",
        );
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, "aggregates.device_id");
        assert_eq!(
            found[0].1,
            "output column 'device_id' is already a group key"
        );
        assert_eq!(
            found[1].1,
            "output column 'window_end' is already the window end"
        );
    }

    #[test]
    fn input_needs_a_timestamp_event_time() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)]));
        let config = config("size = \"1s\"").unwrap();
        let errors = config.plan_window(&[schema]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].path.is_empty());
        assert!(errors[0].message.contains("no event-time field"));

        let errors = config.plan_window(&[input(), input()]).unwrap_err();
        assert_eq!(errors[0].path, ["inputs"]);
    }
}
