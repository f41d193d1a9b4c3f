//! Planning one entry of a window's `aggregates` table: parsing the call, checking its
//! argument (a field or an expression) against the input schema, and choosing the output
//! type. The result is an [`AggregateSpec`], which [`super::accumulate`] runs.

use std::sync::Arc;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema};

use super::expr::{AggregateArgument, AggregateFunction, parse_aggregate};
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
    /// `count` of non-numeric values).
    pub numeric: Option<Numeric>,
    /// The output column's type.
    pub output_type: DataType,
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

