//! The `filter` operator: keeps the rows for which a boolean expression is true.
//!
//! ```toml
//! [operators.valid]
//! type = "filter"
//! inputs = ["sensors"]
//! where = "temperature > 0 and device_id != 'test'"
//! ```
//!
//! A row is kept when the expression is `true`; rows where it is `false` or null are dropped
//! and counted as `filtered`. Null follows SQL: `temperature > 0` is null for a null
//! temperature, so such a row is dropped; `and` / `or` use three-valued logic. A runtime error
//! in the expression (division by zero, a failed cast) makes the value null, so the row is
//! dropped as `filtered`, and the error is also counted as `expression_error` and logged (at
//! most once per 10 s per worker).
//!
//! The expression is type-checked at plan time (see [`crate::expr`]). The operator keeps rows
//! on the worker they arrive on (no exchange), passes batches whose rows all survive through
//! without copying, and outputs its input schema, metadata included.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{AsArray, RecordBatch};
use edgeflow_engine::arrow::compute::filter_record_batch;
use edgeflow_engine::arrow::datatypes::{DataType, SchemaRef};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::{BatchStream, DataflowOperator, OperatorContext, OptionError, parse_options};
use serde::Deserialize;

use crate::expr::{ErrorReporter, Expr};
use crate::fields::{single_input, type_name};
use crate::row_local::map_batches;
use crate::{OperatorConfig, OperatorKind};

/// The `filter` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "filter",
    summary: "Keeps the rows for which a boolean expression is true",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<FilterConfig>(table)?))
}

/// Options of a `filter` operator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition, a boolean expression over the input's fields
    /// (`"temperature > 0 and device_id != 'test'"`). Rows where it is false or null are
    /// dropped. Required.
    #[serde(rename = "where")]
    pub condition: String,
}

impl OperatorConfig for FilterConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        Ok(Arc::new(self.build(inputs)?))
    }
}

impl FilterConfig {
    /// Checks the condition against the input schema and returns the operator.
    ///
    /// # Errors
    /// A syntax or type error in `where` (quoting the expression, with its column), or a
    /// condition that is not a bool.
    pub fn build(&self, inputs: &[SchemaRef]) -> Result<Filter, Vec<OptionError>> {
        let schema = single_input("filter", inputs).map_err(|e| vec![e])?;
        let text = &self.condition;
        let expr =
            Expr::compile(text, schema).map_err(|e| vec![e.into_option_error(&["where"], text)])?;
        if !matches!(expr.data_type(), DataType::Boolean | DataType::Null) {
            return Err(vec![
                OptionError::at(
                    "where",
                    format!(
                        "the condition '{text}' gives {} values, not bool",
                        type_name(expr.data_type())
                    ),
                )
                .with_hint("compare the value, as in 'temperature > 0'"),
            ]);
        }
        Ok(Filter {
            schema: inputs[0].clone(),
            expr: Arc::new(expr),
        })
    }
}

/// The planned `filter` operator.
#[derive(Clone, Debug)]
pub struct Filter {
    schema: SchemaRef,
    expr: Arc<Expr>,
}

/// What [`Filter::apply`] did to one batch.
#[derive(Debug)]
pub struct FilterOutcome {
    /// The surviving rows, or `None` when none survive.
    pub rows: Option<RecordBatch>,
    /// Rows dropped because the condition was false or null.
    pub filtered: usize,
    /// Values of the condition that are null because of a runtime error.
    pub errors: usize,
}

impl Filter {
    /// The condition as written.
    pub fn condition(&self) -> &str {
        self.expr.text()
    }

    /// Filters one batch.
    ///
    /// # Errors
    /// Only if an Arrow kernel fails, which means the batch does not match the planned schema.
    pub fn apply(&self, rows: RecordBatch) -> Result<FilterOutcome, ArrowError> {
        let total = rows.num_rows();
        let evaluated = self.expr.evaluate(&rows)?;
        // A condition of type null (`where = "null"`) keeps nothing.
        let kept = match evaluated.values.as_boolean_opt() {
            Some(mask) => mask.true_count(),
            None => 0,
        };
        let rows = if kept == 0 {
            None
        } else if kept == total {
            Some(rows)
        } else {
            // The filter kernel reads a null in the mask as false.
            Some(filter_record_batch(&rows, evaluated.values.as_boolean())?)
        };
        Ok(FilterOutcome {
            rows,
            filtered: total - kept,
            errors: evaluated.errors,
        })
    }
}

impl DataflowOperator for Filter {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let metrics = ctx.metrics.clone();
        let filter = self.clone();
        let mut reporter = ErrorReporter::new(&ctx.name, filter.condition());
        map_batches(inputs, "Filter", ctx.metrics.clone(), move |rows| {
            let total = rows.num_rows();
            let outcome = match filter.apply(rows) {
                Ok(outcome) => outcome,
                // The type checker rules this out; if it happens anyway, the batch is
                // dropped and counted rather than stopping the pipeline.
                Err(error) => {
                    tracing::error!(
                        operator = %metrics.name(),
                        %error,
                        "Filter kernel failed on a batch of the planned schema; \
                         this is a bug, please report it"
                    );
                    FilterOutcome {
                        rows: None,
                        filtered: total,
                        errors: total,
                    }
                }
            };
            metrics.count_dropped("filtered", outcome.filtered);
            reporter.report(&metrics, outcome.errors);
            outcome.rows
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{Float64Array, Int64Array, StringArray};
    use edgeflow_engine::arrow::datatypes::{Field, Float64Type, Schema};
    use std::collections::HashMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new_with_metadata(
            vec![
                Field::new("device_id", DataType::Utf8, true),
                Field::new("temperature", DataType::Float64, true),
                Field::new("humidity", DataType::Float64, true),
                Field::new("level", DataType::Int64, true),
            ],
            HashMap::from([("k".to_string(), "v".to_string())]),
        ))
    }

    fn config(text: &str) -> Result<FilterConfig, OptionError> {
        parse_options(text.parse().unwrap())
    }

    fn filter(condition: &str) -> Filter {
        FilterConfig {
            condition: condition.into(),
        }
        .build(&[schema()])
        .unwrap()
    }

    fn rows() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("test"),
                    None,
                    Some("b"),
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(20.0),
                    Some(21.0),
                    Some(5.0),
                    None,
                ])),
                Arc::new(Float64Array::from(vec![50.0, 60.0, 70.0, 80.0])),
                Arc::new(Int64Array::from(vec![1, 0, 2, 0])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn query_file_example_parses_and_plans() {
        let config = config("where = \"temperature > 0 and device_id != 'test'\"").unwrap();
        let filter = config.build(&[schema()]).unwrap();
        assert_eq!(filter.output_schema(), schema());
        let outcome = filter.apply(rows()).unwrap();
        // Row 1 is a test device; rows 2 and 3 have a null device or temperature.
        assert_eq!(outcome.filtered, 3);
        let kept = outcome.rows.unwrap();
        assert_eq!(kept.num_rows(), 1);
        assert_eq!(kept.schema(), schema());
    }

    #[test]
    fn unknown_options_and_plan_errors_have_paths() {
        let error = config("wher = \"x\"").unwrap_err();
        assert!(error.message.contains("wher"), "{}", error.message);

        let errors = filter_errors("temprature > 0");
        assert_eq!(errors[0].path, ["where"]);
        assert_eq!(
            errors[0].message,
            "unknown field 'temprature' at column 1 of expression 'temprature > 0'"
        );
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("did you mean 'temperature'?")
        );

        let errors = filter_errors("temperature > 'hot'");
        assert!(
            errors[0].message.contains("at column 13"),
            "{}",
            errors[0].message
        );

        let errors = filter_errors("temperature * 2");
        assert_eq!(
            errors[0].message,
            "the condition 'temperature * 2' gives float64 values, not bool"
        );
    }

    fn filter_errors(condition: &str) -> Vec<OptionError> {
        FilterConfig {
            condition: condition.into(),
        }
        .build(&[schema()])
        .unwrap_err()
    }

    #[test]
    fn all_kept_passes_through_and_none_kept_vanishes() {
        let input = rows();
        let outcome = filter("humidity > 0").apply(input.clone()).unwrap();
        assert_eq!(outcome.rows.unwrap(), input);
        assert_eq!(outcome.filtered, 0);
        let outcome = filter("false").apply(rows()).unwrap();
        assert!(outcome.rows.is_none());
        assert_eq!(outcome.filtered, 4);
        let outcome = filter("null").apply(rows()).unwrap();
        assert!(outcome.rows.is_none());
    }

    #[test]
    fn runtime_errors_drop_the_row_and_are_counted() {
        let outcome = filter("humidity / level > 10").apply(rows()).unwrap();
        // 50/1 and 70/2 pass; 60/0 and 80/0 are null (division by zero).
        assert_eq!(outcome.errors, 2);
        assert_eq!(outcome.filtered, 2);
        let kept = outcome.rows.unwrap();
        let humidity: Vec<f64> = kept
            .column(2)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec();
        assert_eq!(humidity, [50.0, 70.0]);
    }

    #[test]
    fn three_valued_or_keeps_rows_with_a_null_side() {
        let outcome = filter("temperature > 100 or device_id = 'b'")
            .apply(rows())
            .unwrap();
        // Row 3: null or true is true.
        assert_eq!(outcome.rows.unwrap().num_rows(), 1);
    }
}
