//! [`WindowConfig`]: the options of a `window` operator, and their checks against the input
//! schema, which produce the [`WindowPlan`] every worker runs.

use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use edgeflow_engine::schema::{event_time_column, schema_with_event_time, timestamp_type};
use serde::Deserialize;

use super::expr::{AggregateArgument, AggregateFunction, parse_aggregate};
use crate::expr::{Expr, ExprError};
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
    /// Output column name → aggregate: `count()`, `count(arg)`, `count_if(condition)`,
    /// `sum(arg)`, `mean(arg)`, `min(arg)` or `max(arg)`, where `arg` is a field or an
    /// expression over the input's fields (`"mean(temperature * 1.8 + 32)"`) and `condition`
    /// a bool expression. Columns appear in this order after the window bounds and group
    /// keys. Default: none.
    #[serde(default)]
    pub aggregates: OrderedMap<String>,
}

/// One aggregate of the plan.
#[derive(Clone, Debug)]
pub(crate) struct AggregateSpec {
    /// The function.
    pub function: AggregateFunction,
    /// The input column it reads (`None` for `count()` and for an expression).
    pub column: Option<usize>,
    /// The expression it reads instead of a column, evaluated once per batch.
    pub expression: Option<Arc<Expr>>,
    /// How the input values are computed with (`None` for `count()`, `count_if` and for
    /// `count` of non-numeric values).
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
    let field_name = match expr.argument {
        AggregateArgument::Rows => {
            let spec = AggregateSpec {
                function,
                column: None,
                expression: None,
                numeric: None,
                output_type: DataType::Int64,
            };
            return Ok((spec, Field::new(name, DataType::Int64, false)));
        }
        AggregateArgument::Expression {
            text: argument,
            offset,
        } => {
            return plan_expression(schema, name, text, path, function, &argument, offset);
        }
        AggregateArgument::Field(field_name) => field_name,
    };
    let (column, field) = lookup(schema, &field_name, path)?;
    let class = numeric(field.data_type());
    let output_type = match (function, class) {
        (AggregateFunction::Count, _) => DataType::Int64,
        (AggregateFunction::Sum | AggregateFunction::Mean, Some(_)) => DataType::Float64,
        (AggregateFunction::Min | AggregateFunction::Max, Some(_)) => field.data_type().clone(),
        (AggregateFunction::CountIf, _) => {
            unreachable!("the argument of count_if is always parsed as an expression")
        }
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
        expression: None,
        numeric: class,
        output_type: output_type.clone(),
    };
    Ok((spec, Field::new(name, output_type, nullable)))
}

/// Plans an aggregate whose argument is an expression: compiles `argument` (found at byte
/// `offset` of the aggregate `text`) and checks its type against the function. Errors point
/// into the whole aggregate text, as `at column N of expression '…'`.
fn plan_expression(
    schema: &Schema,
    name: &str,
    text: &str,
    path: &[&str],
    function: AggregateFunction,
    argument: &str,
    offset: usize,
) -> Result<(AggregateSpec, Field), OptionError> {
    let at = |error: ExprError| {
        ExprError {
            offset: error.offset + offset,
            ..error
        }
        .into_option_error(path, text)
    };
    let expr = Expr::compile(argument, schema).map_err(at)?;
    let data_type = expr.data_type().clone();
    if data_type == DataType::Null {
        return Err(at(ExprError::new(
            0,
            format!("'{argument}' is always null"),
        )
        .with_hint("give it a type, as in cast(null as float64)")));
    }
    let class = numeric(&data_type);
    let output_type = match (function, class) {
        (AggregateFunction::CountIf, _) if data_type == DataType::Boolean => DataType::Int64,
        (AggregateFunction::CountIf, _) => {
            return Err(at(ExprError::new(
                0,
                format!(
                    "count_if needs a bool condition, but '{argument}' gives {} values",
                    type_name(&data_type)
                ),
            )
            .with_hint("compare the value, as in 'count_if(temperature > 30)'")));
        }
        (AggregateFunction::Count, _) => DataType::Int64,
        (AggregateFunction::Sum | AggregateFunction::Mean, Some(_)) => DataType::Float64,
        // Expressions compute with int64 and float64, so these are the output types too.
        (AggregateFunction::Min | AggregateFunction::Max, Some(_)) => data_type.clone(),
        (_, None) => {
            return Err(at(ExprError::new(
                0,
                format!("cannot take {function} of {} values", type_name(&data_type)),
            )
            .with_hint(format!("{function} takes numeric (int or float) values"))));
        }
    };
    let counts = matches!(
        function,
        AggregateFunction::Count | AggregateFunction::CountIf
    );
    let spec = AggregateSpec {
        function,
        column: None,
        expression: Some(Arc::new(expr)),
        // count_if reads the condition as bools, not numbers.
        numeric: class.filter(|_| function != AggregateFunction::CountIf),
        output_type: output_type.clone(),
    };
    Ok((spec, Field::new(name, output_type, !counts)))
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
    fn aggregates_of_expressions_plan() {
        let config = config(
            "size = \"1s\"\naggregates = { hot = \"count_if(temperature > 30)\", \
             f_avg = \"mean(temperature * 1.8 + 32)\", n = \"count()\", m = \"max(temperature)\", \
             l = \"min(level)\", l2 = \"max(level * 2)\", c = \"count(level / 0)\", \
             o = \"count_if(ok)\", s = \"sum(\\\"level\\\")\" }",
        )
        .unwrap();
        let plan = config.plan_window(&[input()]).unwrap();
        let columns: Vec<(&str, &DataType, bool)> = plan.output_schema.fields()[2..]
            .iter()
            .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            columns,
            [
                ("hot", &DataType::Int64, false),
                ("f_avg", &DataType::Float64, true),
                ("n", &DataType::Int64, false),
                ("m", &DataType::Float64, true),
                // A plain field keeps its type; an expression computes with int64.
                ("l", &DataType::Int32, true),
                ("l2", &DataType::Int64, true),
                ("c", &DataType::Int64, false),
                ("o", &DataType::Int64, false),
                ("s", &DataType::Float64, true),
            ]
        );
        let reads: Vec<(Option<usize>, Option<&str>)> = plan
            .aggregates
            .iter()
            .map(|a| (a.column, a.expression.as_ref().map(|e| e.text())))
            .collect();
        assert_eq!(
            reads,
            [
                (None, Some("temperature > 30")),
                (None, Some("temperature * 1.8 + 32")),
                (None, None),
                (Some(2), None),
                (Some(3), None),
                (None, Some("level * 2")),
                (None, Some("level / 0")),
                (None, Some("ok")),
                (Some(3), None),
            ]
        );
    }

    #[test]
    fn expression_arguments_are_type_checked() {
        let found = errors(
            "size = \"1s\"\naggregates = { a = \"count_if(temperature)\", \
             b = \"mean(concat(device_id, 'x'))\", c = \"mean(lower(device_id))\", \
             d = \"max(temprature * 2)\", e = \"sum(null)\", f = \"count_if()\", \
             g = \"avg(temperature * 2)\", h = \"min(temperature >)\", \
             i = \"mean(device_id || 'x')\" }",
        );
        let expected = [
            (
                "aggregates.a",
                "count_if needs a bool condition, but 'temperature' gives float64 values \
                 at column 10 of expression 'count_if(temperature)'",
                Some("compare the value, as in 'count_if(temperature > 30)'"),
            ),
            (
                "aggregates.b",
                "cannot take mean of string values at column 6 of expression \
                 'mean(concat(device_id, 'x'))'",
                Some("mean takes numeric (int or float) values"),
            ),
            (
                "aggregates.c",
                "cannot take mean of string values at column 6 of expression \
                 'mean(lower(device_id))'",
                Some("mean takes numeric (int or float) values"),
            ),
            (
                "aggregates.d",
                "unknown field 'temprature' at column 5 of expression 'max(temprature * 2)'",
                Some("did you mean 'temperature'?"),
            ),
            (
                "aggregates.e",
                "'null' is always null at column 5 of expression 'sum(null)'",
                Some("give it a type, as in cast(null as float64)"),
            ),
            (
                "aggregates.f",
                "'count_if()' needs a condition",
                Some("write 'count_if(condition)', as in 'count_if(temperature > 30)'"),
            ),
            (
                "aggregates.g",
                "unknown aggregate function 'avg'",
                Some("did you mean 'mean'?"),
            ),
        ];
        let expected: Vec<(String, String, Option<String>)> = expected
            .into_iter()
            .map(|(p, m, h)| (p.into(), m.into(), h.map(Into::into)))
            .collect();
        assert_eq!(found[..expected.len()], expected[..]);
        // A syntax error in the argument points into the whole aggregate.
        let (path, message, _) = &found[expected.len()];
        assert_eq!(path, "aggregates.h");
        assert!(
            message.contains("at column 18 of expression 'min(temperature >)'"),
            "{message}"
        );
        // The expression language has no `||`: a syntax error, at the first '|'.
        let (path, message, _) = &found[expected.len() + 1];
        assert_eq!(path, "aggregates.i");
        assert!(
            message.contains("at column 16 of expression 'mean(device_id || 'x')'"),
            "{message}"
        );
        assert_eq!(found.len(), expected.len() + 2);
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
