//! The `derive` operator: computes new columns (or replaces existing ones) from expressions.
//!
//! ```toml
//! [operators.enriched]
//! type = "derive"
//! inputs = ["sensors"]
//! columns = { dew_point = "temperature - (100 - humidity) / 5", site = "split(topic, '/')[1]" }
//! ```
//!
//! Each entry of `columns` names an output column and gives its expression (see
//! [`crate::expr`]). A name that is not a field of the input adds a column at the end, in the
//! order of `columns`; a name that is a field replaces that column in place (same position,
//! the expression's type). Every expression reads the **input** row: a later entry does not
//! see the columns computed by earlier ones (write the expression out again instead), so the
//! order of `columns` never changes a value.
//!
//! A runtime error (division by zero, a failed cast, an overflow) makes that value null; the
//! row is kept. Such values are counted under `expression_error` and logged at most once per
//! 10 s per worker. Rows stay on their worker (no exchange); every input row is output. The
//! output schema keeps the input's metadata; derived columns are nullable, and the event-time
//! column may only be replaced by a timestamp.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{ArrayRef, RecordBatch};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::{event_time_column, timestamp_type};
use edgeflow_engine::{BatchStream, DataflowOperator, OperatorContext, OptionError, parse_options};
use serde::Deserialize;

use crate::expr::{ErrorReporter, Expr};
use crate::fields::{error_at, single_input, type_name};
use crate::options::OrderedMap;
use crate::row_local::map_batches;
use crate::{OperatorConfig, OperatorKind};

/// The `derive` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "derive",
    summary: "Adds or replaces columns computed from expressions",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<DeriveConfig>(table)?))
}

/// Options of a `derive` operator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeriveConfig {
    /// `{ name = "expression" }`, in output order: a new name appends a column, an input
    /// field's name replaces it in place. Expressions read the input row only. Required, not
    /// empty.
    pub columns: OrderedMap<String>,
}

impl OperatorConfig for DeriveConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        Ok(Arc::new(self.build(inputs)?))
    }
}

impl DeriveConfig {
    /// Checks every expression against the input schema and returns the operator.
    ///
    /// # Errors
    /// Every problem found, each at `columns.<name>`, quoting the expression.
    pub fn build(&self, inputs: &[SchemaRef]) -> Result<Derive, Vec<OptionError>> {
        let schema = single_input("derive", inputs).map_err(|e| vec![e])?;
        if self.columns.is_empty() {
            return Err(vec![
                OptionError::at("columns", "a 'derive' operator needs at least one column")
                    .with_hint("columns = { name = \"expression\" }"),
            ]);
        }
        let event_time = event_time_column(schema).map(|(index, _)| index);
        let mut errors = Vec::new();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut outputs = Vec::new();
        for (name, text) in self.columns.iter() {
            let path = ["columns", name];
            let expr = match Expr::compile(text, schema) {
                Ok(expr) => expr,
                Err(error) => {
                    errors.push(error.into_option_error(&path, text));
                    continue;
                }
            };
            let data_type = expr.data_type().clone();
            if data_type == DataType::Null {
                errors.push(
                    error_at(&path, format!("the expression '{text}' is always null"))
                        .with_hint("give it a type, as in cast(null as float64)"),
                );
                continue;
            }
            let field = Field::new(name, data_type.clone(), true);
            let position = match schema.index_of(name) {
                Ok(index) => {
                    if Some(index) == event_time && data_type != timestamp_type() {
                        errors.push(error_at(
                            &path,
                            format!(
                                "'{name}' is the event-time column and must stay a \
                                 timestamp_ms, but '{text}' gives {}",
                                type_name(&data_type)
                            ),
                        ));
                        continue;
                    }
                    fields[index] = field;
                    index
                }
                Err(_) => {
                    fields.push(field);
                    fields.len() - 1
                }
            };
            outputs.push((position, Arc::new(expr)));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Derive {
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            outputs,
        })
    }
}

/// The planned `derive` operator.
#[derive(Clone, Debug)]
pub struct Derive {
    schema: SchemaRef,
    /// Output column index and expression, in `columns` order.
    outputs: Vec<(usize, Arc<Expr>)>,
}

/// What [`Derive::apply`] did to one batch.
#[derive(Debug)]
pub struct DeriveOutcome {
    /// The rows with their derived columns.
    pub rows: RecordBatch,
    /// Values that are null because of a runtime error, per entry of `columns`.
    pub errors: Vec<usize>,
}

impl Derive {
    /// The expressions, in `columns` order.
    pub fn expressions(&self) -> impl Iterator<Item = &Expr> {
        self.outputs.iter().map(|(_, e)| e.as_ref())
    }

    /// Computes the derived columns of one batch.
    ///
    /// # Errors
    /// Only if an Arrow kernel fails, which means the batch does not match the planned schema.
    pub fn apply(&self, rows: &RecordBatch) -> Result<DeriveOutcome, ArrowError> {
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        let mut errors = Vec::with_capacity(self.outputs.len());
        for (position, expr) in &self.outputs {
            // Every expression reads `rows`, the input, never a column derived before it.
            let evaluated = expr.evaluate(rows)?;
            errors.push(evaluated.errors);
            if *position < columns.len() {
                columns[*position] = evaluated.values;
            } else {
                columns.push(evaluated.values);
            }
        }
        Ok(DeriveOutcome {
            rows: RecordBatch::try_new(self.schema.clone(), columns)?,
            errors,
        })
    }
}

impl DataflowOperator for Derive {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let metrics = ctx.metrics.clone();
        let derive = self.clone();
        let mut reporters: Vec<ErrorReporter> = derive
            .expressions()
            .map(|e| ErrorReporter::new(&ctx.name, e.text()))
            .collect();
        map_batches(inputs, "Derive", ctx.metrics.clone(), move |rows| {
            match derive.apply(&rows) {
                Ok(outcome) => {
                    for (reporter, errors) in reporters.iter_mut().zip(outcome.errors) {
                        reporter.report(&metrics, errors);
                    }
                    Some(outcome.rows)
                }
                // The type checker rules this out; if it happens anyway, the batch is
                // dropped and counted rather than stopping the pipeline.
                Err(error) => {
                    tracing::error!(
                        operator = %metrics.name(),
                        %error,
                        "Derive kernel failed on a batch of the planned schema; \
                         this is a bug, please report it"
                    );
                    metrics.count_dropped("expression_error", rows.num_rows());
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{
        AsArray, Float64Array, StringArray, TimestampMillisecondArray,
    };
    use edgeflow_engine::arrow::datatypes::Float64Type;
    use edgeflow_engine::schema::{UTC, schema_with_event_time};

    fn schema() -> SchemaRef {
        schema_with_event_time(
            [
                Field::new("topic", DataType::Utf8, true),
                Field::new("ts", timestamp_type(), false),
                Field::new("temperature", DataType::Float64, true),
                Field::new("humidity", DataType::Float64, true),
            ],
            Some("ts"),
        )
    }

    fn config(text: &str) -> Result<DeriveConfig, OptionError> {
        parse_options(text.parse().unwrap())
    }

    fn rows() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![Some("plant/site-3/t"), None])),
                Arc::new(TimestampMillisecondArray::from(vec![1, 2]).with_timezone(UTC)),
                Arc::new(Float64Array::from(vec![Some(20.0), None])),
                Arc::new(Float64Array::from(vec![50.0, 60.0])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn query_file_example_parses_plans_and_appends_in_order() {
        let config = config(
            "columns = { dew_point = \"temperature - (100 - humidity) / 5\", \
             site = \"split(topic, '/')[1]\" }",
        )
        .unwrap();
        let derive = config.build(&[schema()]).unwrap();
        let out = derive.output_schema();
        let names: Vec<&str> = out.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "topic",
                "ts",
                "temperature",
                "humidity",
                "dew_point",
                "site"
            ]
        );
        assert_eq!(out.field(4).data_type(), &DataType::Float64);
        assert_eq!(out.field(5).data_type(), &DataType::Utf8);
        assert_eq!(out.metadata(), schema().metadata());
        let outcome = derive.apply(&rows()).unwrap();
        let dew: Vec<Option<f64>> = outcome
            .rows
            .column(4)
            .as_primitive::<Float64Type>()
            .iter()
            .collect();
        assert_eq!(dew, [Some(10.0), None]);
        let site: Vec<Option<&str>> = outcome.rows.column(5).as_string::<i32>().iter().collect();
        assert_eq!(site, [Some("site-3"), None]);
        assert_eq!(outcome.errors, [0, 0]);
    }

    #[test]
    fn existing_columns_are_replaced_in_place_from_input_values() {
        let derive =
            config("columns = { temperature = \"temperature * 2\", doubled = \"temperature\" }")
                .unwrap()
                .build(&[schema()])
                .unwrap();
        assert_eq!(derive.output_schema().fields().len(), 5);
        let outcome = derive.apply(&rows()).unwrap();
        let t = outcome.rows.column(2).as_primitive::<Float64Type>();
        assert_eq!(t.value(0), 40.0);
        // `doubled` reads the input temperature, not the replaced one.
        let d = outcome.rows.column(4).as_primitive::<Float64Type>();
        assert_eq!(d.value(0), 20.0);
    }

    #[test]
    fn plan_errors_are_reported_per_column() {
        let errors = config(
            "columns = { a = \"temprature + 1\", b = \"humidity +\", ts = \"humidity\", \
             c = \"null\", d = \"1\" }",
        )
        .unwrap()
        .build(&[schema()])
        .unwrap_err();
        assert_eq!(errors.len(), 4);
        assert_eq!(errors[0].path, ["columns", "a"]);
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("did you mean 'temperature'?")
        );
        assert_eq!(errors[1].path, ["columns", "b"]);
        assert!(
            errors[1].message.contains("at column 11"),
            "{}",
            errors[1].message
        );
        assert_eq!(errors[2].path, ["columns", "ts"]);
        assert!(
            errors[2].message.contains("event-time"),
            "{}",
            errors[2].message
        );
        assert_eq!(errors[3].path, ["columns", "c"]);

        let errors = config("columns = {}")
            .unwrap()
            .build(&[schema()])
            .unwrap_err();
        assert_eq!(errors[0].path, ["columns"]);
    }

    #[test]
    fn runtime_errors_are_null_and_counted_per_column() {
        let derive = config("columns = { r = \"humidity / (temperature - 20)\" }")
            .unwrap()
            .build(&[schema()])
            .unwrap();
        let outcome = derive.apply(&rows()).unwrap();
        assert_eq!(outcome.errors, [1]);
        assert_eq!(outcome.rows.column(4).null_count(), 2);
    }
}
