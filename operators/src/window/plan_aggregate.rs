//! Planning one entry of a window's `aggregates` table: parsing the call, checking its
//! argument (a field or an expression) against the input schema, and choosing the output
//! type. The result is an [`AggregateSpec`], which [`super::accumulate`] runs.

use std::sync::Arc;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema};

use edgeflow_engine::schema::timestamp_type;

use super::expr::{
    AggregateArgument, AggregateFunction, AggregateParameter, Interpolation, parse_aggregate,
};
use crate::expr::{Expr, ExprError};
use crate::fields::{Numeric, error_at, lookup, numeric, type_name};

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
    /// non-numeric values; bools that `first`, `last` and `distinct_count` read are computed
    /// with as `Int`, 0 and 1).
    pub numeric: Option<Numeric>,
    /// The output column's type.
    pub output_type: DataType,
    /// The level of `quantile` (0.5 for `median`; unused by the other functions).
    pub level: f64,
    /// How `time_weighted_mean` and `integral` interpolate (unused by the others).
    pub interpolation: Interpolation,
}

impl AggregateSpec {
    /// A spec with the default parameters (level 0.5, step interpolation).
    pub(crate) fn new(
        function: AggregateFunction,
        column: Option<usize>,
        expression: Option<Arc<Expr>>,
        numeric: Option<Numeric>,
        output_type: DataType,
    ) -> Self {
        Self {
            function,
            column,
            expression,
            numeric,
            output_type,
            level: 0.5,
            interpolation: Interpolation::Step,
        }
    }

    fn with_parameter(mut self, parameter: Option<AggregateParameter>) -> Self {
        match parameter {
            Some(AggregateParameter::Level(q)) => self.level = q,
            Some(AggregateParameter::Interpolation(i)) => self.interpolation = i,
            None => {}
        }
        self
    }
}

/// Whether `function`'s output is never null (the counts, which are 0 without values).
fn counts(function: AggregateFunction) -> bool {
    matches!(
        function,
        AggregateFunction::Count | AggregateFunction::CountIf | AggregateFunction::DistinctCount
    )
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The output type of `function` over values of `data_type` (`class` is its numeric class)
/// and how the values are computed with, or, for a type the function cannot take, the hint
/// of the error.
fn output_type(
    function: AggregateFunction,
    data_type: &DataType,
    class: Option<Numeric>,
    what: &str,
) -> Result<(DataType, Option<Numeric>), String> {
    use AggregateFunction::*;
    // Bools and timestamps are kept as the integers they cast to (and cast back exactly).
    let as_int = matches!(data_type, DataType::Boolean | DataType::Timestamp(..));
    let any_value = class.is_some() || as_int || is_string(data_type);
    match function {
        Count => Ok((DataType::Int64, class)),
        First | Last if any_value => {
            Ok((data_type.clone(), class.or(as_int.then_some(Numeric::Int))))
        }
        DistinctCount if any_value => {
            Ok((DataType::Int64, class.or(as_int.then_some(Numeric::Int))))
        }
        First | Last | DistinctCount => Err(format!(
            "{function} takes number, bool, string and timestamp {what}"
        )),
        _ if class.is_none() => Err(format!("{function} takes numeric (int or float) {what}")),
        Min | Max => Ok((data_type.clone(), class)),
        MinAt | MaxAt => Ok((timestamp_type(), class)),
        Sum | Mean | Stddev | Variance | StddevPop | VarPop | Median | Quantile | Rate
        | Increase | TimeWeightedMean | Integral => Ok((DataType::Float64, class)),
        CountIf => Err("count_if takes a bool condition".into()),
    }
}

pub(crate) fn plan_aggregate(
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
    let parameter = expr.parameter;
    let field_name = match expr.argument {
        AggregateArgument::Rows => {
            let spec = AggregateSpec::new(function, None, None, None, DataType::Int64);
            return Ok((spec, Field::new(name, DataType::Int64, false)));
        }
        AggregateArgument::Expression {
            text: argument,
            offset,
        } => {
            let (spec, field) =
                plan_expression(schema, name, text, path, function, &argument, offset)?;
            return Ok((spec.with_parameter(parameter), field));
        }
        AggregateArgument::Field(field_name) => field_name,
    };
    let (column, field) = lookup(schema, &field_name, path)?;
    if function == AggregateFunction::CountIf {
        // The parser reads every count_if condition as an expression; this is a bug guard.
        return Err(error_at(
            path,
            "the condition of count_if must be an expression",
        ));
    }
    let class = numeric(field.data_type());
    let (output_type, class) =
        output_type(function, field.data_type(), class, "fields").map_err(|hint| {
            error_at(
                path,
                format!(
                    "cannot take {function} of {} field '{field_name}'",
                    type_name(field.data_type())
                ),
            )
            .with_hint(hint)
        })?;
    let spec = AggregateSpec::new(function, Some(column), None, class, output_type.clone())
        .with_parameter(parameter);
    Ok((spec, Field::new(name, output_type, !counts(function))))
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
    if function == AggregateFunction::CountIf {
        if data_type != DataType::Boolean {
            return Err(at(ExprError::new(
                0,
                format!(
                    "count_if needs a bool condition, but '{argument}' gives {} values",
                    type_name(&data_type)
                ),
            )
            .with_hint("compare the value, as in 'count_if(temperature > 30)'")));
        }
        // count_if reads the condition as bools, not numbers.
        let spec = AggregateSpec::new(function, None, Some(Arc::new(expr)), None, DataType::Int64);
        return Ok((spec, Field::new(name, DataType::Int64, false)));
    }
    // Expressions compute with int64 and float64, so min, max, first and last give those.
    let (output_type, class) =
        output_type(function, &data_type, class, "values").map_err(|hint| {
            at(ExprError::new(
                0,
                format!("cannot take {function} of {} values", type_name(&data_type)),
            )
            .with_hint(hint))
        })?;
    let spec = AggregateSpec::new(
        function,
        None,
        Some(Arc::new(expr)),
        class,
        output_type.clone(),
    );
    Ok((spec, Field::new(name, output_type, !counts(function))))
}
