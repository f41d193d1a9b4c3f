//! The `clean` operator: drops rows with missing or implausible readings.
//!
//! Use it right after a source, before anything aggregates: a sensor that reports `null`,
//! `NaN` or a physically impossible value (a temperature of 3000 °C) should not skew a mean.
//!
//! ```toml
//! [operators.clean]
//! type = "clean"
//! inputs = ["sensors"]
//! drop_null = ["temperature"]
//! drop_outside = { temperature = [-40.0, 125.0], humidity = [0.0, 100.0] }
//! ```
//!
//! * `drop_null`: a row whose value in any listed field is null, or NaN for a float field, is
//!   dropped and counted as `null_field`.
//! * `drop_outside`: a row whose value in a listed numeric field lies outside the inclusive
//!   range `[min, max]` is dropped and counted as `out_of_range`. Null and NaN values pass this
//!   rule (list the field in `drop_null` to drop them too).
//!
//! Each dropped row is counted once, under the first rule it fails (`drop_null` first). The
//! operator works a column at a time with Arrow kernels, keeps rows on the worker they arrive
//! on (no exchange), and passes batches whose rows all survive through without copying. Its
//! output schema is its input schema, metadata included.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch,
};
use edgeflow_engine::arrow::buffer::BooleanBuffer;
use edgeflow_engine::arrow::compute::kernels::cmp::{gt, lt};
use edgeflow_engine::arrow::compute::{
    and, and_not, cast, filter_record_batch, is_not_null, or, prep_null_mask_filter,
};
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::{BatchStream, DataflowOperator, OperatorContext, OptionError, parse_options};
use serde::Deserialize;

use crate::fields::{Numeric, error_at, lookup, numeric, single_input, type_name};
use crate::options::OrderedMap;
use crate::row_local::map_batches;
use crate::{OperatorConfig, OperatorKind};

/// The `clean` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "clean",
    summary: "Drops rows whose fields are null, NaN or outside a range",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<CleanConfig>(table)?))
}

/// Options of a `clean` operator. At least one rule must be given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanConfig {
    /// Fields that must hold a value: a row whose value in any of them is null (or NaN, for a
    /// float field) is dropped and counted as `null_field`. Fields of any type. Default: none.
    #[serde(default)]
    pub drop_null: Vec<String>,
    /// Inclusive `[min, max]` range per numeric field: a row whose value lies outside is
    /// dropped and counted as `out_of_range`. Null and NaN values pass this rule. Integer
    /// fields are compared exactly (`[0.5, 10.5]` keeps 1 to 10). Default: none.
    #[serde(default)]
    pub drop_outside: OrderedMap<[f64; 2]>,
}

impl OperatorConfig for CleanConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        Ok(Arc::new(self.build(inputs)?))
    }
}

impl CleanConfig {
    /// Checks the options against the input schema and returns the operator.
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    pub fn build(&self, inputs: &[SchemaRef]) -> Result<Clean, Vec<OptionError>> {
        let schema = single_input("clean", inputs).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if self.drop_null.is_empty() && self.drop_outside.is_empty() {
            errors.push(
                OptionError::at("", "a 'clean' operator needs at least one rule").with_hint(
                    "add drop_null = [\"field\"] or drop_outside = { field = [min, max] }",
                ),
            );
        }

        let mut null_rules: Vec<NullRule> = Vec::new();
        for (position, name) in self.drop_null.iter().enumerate() {
            let position = position.to_string();
            match lookup(schema, name, &["drop_null", &position]) {
                Ok((column, field)) => {
                    if null_rules.iter().all(|rule| rule.column != column) {
                        null_rules.push(NullRule {
                            column,
                            nan_too: numeric(field.data_type()) == Some(Numeric::Float),
                        });
                    }
                }
                Err(error) => errors.push(error),
            }
        }

        let mut range_rules: Vec<RangeRule> = Vec::new();
        for (name, &[min, max]) in self.drop_outside.iter() {
            let path = ["drop_outside", name];
            let (column, field) = match lookup(schema, name, &path) {
                Ok(found) => found,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            let Some(class) = numeric(field.data_type()) else {
                errors.push(
                    error_at(
                        &path,
                        format!(
                            "cannot check the range of {} field '{name}'",
                            type_name(field.data_type())
                        ),
                    )
                    .with_hint("drop_outside takes numeric (int or float) fields"),
                );
                continue;
            };
            if min.is_nan() || max.is_nan() {
                let bad = if min.is_nan() { "0" } else { "1" };
                errors.push(error_at(
                    &["drop_outside", name, bad],
                    format!("range bounds of '{name}' must be numbers, not NaN"),
                ));
                continue;
            }
            if min > max {
                errors.push(
                    error_at(
                        &path,
                        format!("empty range [{min}, {max}] for '{name}': min is above max"),
                    )
                    .with_hint(format!("did you mean [{max}, {min}]?")),
                );
                continue;
            }
            range_rules.push(match class {
                Numeric::Float => RangeRule::Float { column, min, max },
                // Float-to-int `as` saturates, so infinite bounds become i64::MIN / MAX.
                Numeric::Int => RangeRule::Int {
                    column,
                    min: min.ceil() as i64,
                    max: max.floor() as i64,
                },
            });
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Clean {
            schema: inputs[0].clone(),
            null_rules,
            range_rules,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct NullRule {
    column: usize,
    /// Float fields: NaN counts as missing too.
    nan_too: bool,
}

#[derive(Clone, Copy, Debug)]
enum RangeRule {
    Float { column: usize, min: f64, max: f64 },
    Int { column: usize, min: i64, max: i64 },
}

/// The planned `clean` operator.
#[derive(Clone, Debug)]
pub struct Clean {
    schema: SchemaRef,
    null_rules: Vec<NullRule>,
    range_rules: Vec<RangeRule>,
}

/// What [`Clean::apply`] did to one batch.
#[derive(Debug)]
pub struct CleanOutcome {
    /// The surviving rows, or `None` when none survive.
    pub rows: Option<RecordBatch>,
    /// Rows dropped by `drop_null`.
    pub null_field: usize,
    /// Rows dropped by `drop_outside` (among those `drop_null` kept).
    pub out_of_range: usize,
}

impl Clean {
    /// Filters one batch.
    ///
    /// # Errors
    /// Only if an Arrow kernel fails, which means the batch does not match the planned schema.
    pub fn apply(&self, rows: RecordBatch) -> Result<CleanOutcome, ArrowError> {
        let total = rows.num_rows();
        // `None` stands for "every row passes", so clean batches never build a mask.
        let mut present: Option<BooleanArray> = None;
        for rule in &self.null_rules {
            let column = rows.column(rule.column);
            let mut ok = if column.null_count() > 0 {
                Some(is_not_null(column)?)
            } else {
                None
            };
            if rule.nan_too {
                let nan = nan_mask(&as_f64(column)?);
                if nan.true_count() > 0 {
                    let base = ok.unwrap_or_else(|| all_true(total));
                    ok = Some(and_not(&base, &nan)?);
                }
            }
            present = both(present, ok)?;
        }

        let mut outside: Option<BooleanArray> = None;
        for rule in &self.range_rules {
            let out = match *rule {
                RangeRule::Float { column, min, max } => {
                    let values = as_f64(rows.column(column))?;
                    // Arrow compares floats by IEEE total order, where NaN sorts above every
                    // number; NaN is "missing" here, not "out of range", so it is masked out.
                    let out = or(
                        &lt(&values, &Float64Array::new_scalar(min))?,
                        &gt(&values, &Float64Array::new_scalar(max))?,
                    )?;
                    and_not(&null_as_false(out), &nan_mask(&values))?
                }
                RangeRule::Int { column, min, max } => {
                    let values = cast(rows.column(column), &DataType::Int64)?;
                    let out = or(
                        &lt(&values, &Int64Array::new_scalar(min))?,
                        &gt(&values, &Int64Array::new_scalar(max))?,
                    )?;
                    // Null values compare to null, and a null here means "keep".
                    null_as_false(out)
                }
            };
            if out.true_count() > 0 {
                outside = Some(match outside {
                    Some(previous) => or(&previous, &out)?,
                    None => out,
                });
            }
        }

        let after_null = present.as_ref().map_or(total, BooleanArray::true_count);
        let keep = match (present, outside) {
            (None, None) => None,
            (Some(present), None) => Some(present),
            (None, Some(outside)) => Some(BooleanArray::new(!outside.values(), None)),
            (Some(present), Some(outside)) => Some(and_not(&present, &outside)?),
        };
        let kept = keep.as_ref().map_or(total, BooleanArray::true_count);
        let rows = match keep {
            _ if kept == 0 => None,
            Some(keep) if kept < total => Some(filter_record_batch(&rows, &keep)?),
            _ => Some(rows),
        };
        Ok(CleanOutcome {
            rows,
            null_field: total - after_null,
            out_of_range: after_null - kept,
        })
    }
}

/// The mask with nulls read as false (`prep_null_mask_filter` wants a mask with nulls).
fn null_as_false(mask: BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 {
        BooleanArray::new(mask.values().clone(), None)
    } else {
        prep_null_mask_filter(&mask)
    }
}

fn all_true(len: usize) -> BooleanArray {
    BooleanArray::new(BooleanBuffer::new_set(len), None)
}

/// `a AND b`, where `None` means all true.
fn both(
    a: Option<BooleanArray>,
    b: Option<BooleanArray>,
) -> Result<Option<BooleanArray>, ArrowError> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(and(&a, &b)?),
        (a, None) => a,
        (None, b) => b,
    })
}

/// A float column as `Float64` (Float32 is widened, exactly).
fn as_f64(column: &ArrayRef) -> Result<Float64Array, ArrowError> {
    let column = match column.data_type() {
        DataType::Float64 => column.clone(),
        _ => cast(column, &DataType::Float64)?,
    };
    Ok(column.as_primitive::<Float64Type>().clone())
}

/// True where the value slot holds NaN, with no nulls (null slots may say anything; callers
/// combine the mask with validity).
fn nan_mask(values: &Float64Array) -> BooleanArray {
    let raw = values.values();
    BooleanArray::new(
        BooleanBuffer::collect_bool(raw.len(), |i| raw[i].is_nan()),
        None,
    )
}

impl DataflowOperator for Clean {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope> {
        let metrics = ctx.metrics.clone();
        let clean = self.clone();
        map_batches(inputs, "Clean", ctx.metrics.clone(), move |rows| {
            let outcome = clean.apply(rows).expect(
                "clean kernels on a batch of the planned schema cannot fail: \
                 this is a bug, please report it",
            );
            metrics.count_dropped("null_field", outcome.null_field);
            metrics.count_dropped("out_of_range", outcome.out_of_range);
            outcome.rows
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{Float32Array, Int32Array, StringArray};
    use edgeflow_engine::arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
            Field::new("humidity", DataType::Float32, true),
            Field::new("level", DataType::Int32, true),
        ]))
    }

    fn config(text: &str) -> Result<CleanConfig, OptionError> {
        parse_options(text.parse::<toml::Table>().unwrap())
    }

    fn plan(text: &str) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        config(text).unwrap().plan(&[schema()])
    }

    fn clean(text: &str) -> Clean {
        config(text).unwrap().build(&[schema()]).unwrap()
    }

    fn rows(temperature: Vec<Option<f64>>, humidity: Vec<Option<f32>>) -> RecordBatch {
        let n = temperature.len();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![Some("d"); n])),
                Arc::new(Float64Array::from(temperature)),
                Arc::new(Float32Array::from(humidity)),
                Arc::new(Int32Array::from((0..n as i32).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn temperatures(batch: &RecordBatch) -> Vec<Option<f64>> {
        batch
            .column(1)
            .as_primitive::<Float64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn query_file_example_parses_and_plans() {
        let text = "drop_null = [\"temperature\"]\n\
                    drop_outside = { temperature = [-40.0, 125.0], humidity = [0, 100] }";
        let config = config(text).unwrap();
        assert_eq!(config.drop_null, ["temperature"]);
        assert_eq!(config.drop_outside.0[1], ("humidity".into(), [0.0, 100.0]));
        let operator = plan(text).unwrap();
        assert_eq!(operator.output_schema(), schema());
    }

    #[test]
    fn null_and_nan_are_dropped_by_drop_null() {
        let clean = clean("drop_null = [\"temperature\", \"humidity\"]");
        let outcome = clean
            .apply(rows(
                vec![Some(1.0), None, Some(f64::NAN), Some(4.0), Some(5.0)],
                vec![Some(1.0), Some(1.0), Some(1.0), Some(f32::NAN), None],
            ))
            .unwrap();
        assert_eq!(outcome.null_field, 4);
        assert_eq!(outcome.out_of_range, 0);
        assert_eq!(temperatures(&outcome.rows.unwrap()), [Some(1.0)]);
    }

    #[test]
    fn range_bounds_are_inclusive_and_nulls_pass() {
        let clean = clean("drop_outside = { temperature = [-40.0, 125.0] }");
        let input = vec![
            Some(-40.0),
            Some(125.0),
            Some(-40.000001),
            Some(125.5),
            None,
            Some(f64::NAN),
            Some(-f64::NAN),
            Some(f64::INFINITY),
            Some(20.0),
        ];
        let n = input.len();
        let outcome = clean.apply(rows(input, vec![Some(1.0); n])).unwrap();
        assert_eq!(outcome.out_of_range, 3);
        assert_eq!(outcome.null_field, 0);
        let kept = temperatures(&outcome.rows.unwrap());
        assert_eq!(kept.len(), 6);
        assert_eq!(kept[..3], [Some(-40.0), Some(125.0), None]);
        assert!(kept[3].unwrap().is_nan() && kept[4].unwrap().is_nan());
        assert_eq!(kept[5], Some(20.0));
    }

    #[test]
    fn each_dropped_row_is_counted_once_under_its_first_rule() {
        let clean = clean(
            "drop_null = [\"temperature\"]\n\
             drop_outside = { temperature = [0, 10], humidity = [0, 100] }",
        );
        let outcome = clean
            .apply(rows(
                vec![None, Some(50.0), Some(5.0), Some(50.0), Some(5.0)],
                vec![
                    Some(500.0),
                    Some(500.0),
                    Some(500.0),
                    Some(50.0),
                    Some(50.0),
                ],
            ))
            .unwrap();
        assert_eq!(outcome.null_field, 1);
        assert_eq!(outcome.out_of_range, 3);
        assert_eq!(temperatures(&outcome.rows.unwrap()), [Some(5.0)]);
    }

    #[test]
    fn integer_ranges_compare_exactly() {
        // Rows carry level = 0, 1, 2, 3, 4; [0.5, 3.5] keeps 1 to 3.
        let clean = clean("drop_outside = { level = [0.5, 3.5] }");
        let outcome = clean
            .apply(rows(vec![Some(1.0); 5], vec![None; 5]))
            .unwrap();
        assert_eq!(outcome.out_of_range, 2);
        let kept = outcome.rows.unwrap();
        let levels: Vec<i32> = kept
            .column(3)
            .as_primitive::<edgeflow_engine::arrow::datatypes::Int32Type>()
            .values()
            .to_vec();
        assert_eq!(levels, [1, 2, 3]);
    }

    #[test]
    fn clean_batches_pass_through_and_empty_results_vanish() {
        let clean = clean("drop_null = [\"temperature\"]");
        let input = rows(vec![Some(1.0), Some(2.0)], vec![None, None]);
        let outcome = clean.apply(input.clone()).unwrap();
        let out = outcome.rows.unwrap();
        assert_eq!(out, input);
        assert!(Arc::ptr_eq(out.column(1), input.column(1)));

        let outcome = clean
            .apply(rows(vec![None, None], vec![None, None]))
            .unwrap();
        assert!(outcome.rows.is_none());
        assert_eq!(outcome.null_field, 2);
    }

    #[test]
    fn every_bad_option_is_reported_with_its_path_and_hint() {
        let errors = plan(
            "drop_null = [\"temprature\", \"device_id\"]\n\
             drop_outside = { device_id = [0, 1], humidty = [0, 100], temperature = [125, -40] }",
        )
        .unwrap_err();
        let summary: Vec<(String, String, Option<String>)> = errors
            .into_iter()
            .map(|e| (e.path.join("."), e.message, e.hint))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "drop_null.0".to_string(),
                    "'temprature' is not a field of the input".to_string(),
                    Some("did you mean 'temperature'?".to_string()),
                ),
                (
                    "drop_outside.device_id".to_string(),
                    "cannot check the range of string field 'device_id'".to_string(),
                    Some("drop_outside takes numeric (int or float) fields".to_string()),
                ),
                (
                    "drop_outside.humidty".to_string(),
                    "'humidty' is not a field of the input".to_string(),
                    Some("did you mean 'humidity'?".to_string()),
                ),
                (
                    "drop_outside.temperature".to_string(),
                    "empty range [125, -40] for 'temperature': min is above max".to_string(),
                    Some("did you mean [-40, 125]?".to_string()),
                ),
            ]
        );
    }

    #[test]
    fn structural_errors_come_from_parsing() {
        let error = config("drop_nul = [\"temperature\"]").unwrap_err();
        assert!(error.message.contains("drop_nul"), "{}", error.message);
        let error = config("drop_outside = { temperature = [1.0] }").unwrap_err();
        assert_eq!(error.path, ["drop_outside", "temperature"]);
        let error = config("drop_outside = { temperature = [1.0, \"x\"] }").unwrap_err();
        assert_eq!(error.path, ["drop_outside", "temperature", "1"]);
    }

    #[test]
    fn no_rule_or_wrong_input_count_is_an_error() {
        let errors = plan("").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].path.is_empty());
        assert!(errors[0].message.contains("at least one rule"));

        let config = config("drop_null = [\"temperature\"]").unwrap();
        let errors = config.plan(&[schema(), schema()]).unwrap_err();
        assert_eq!(errors[0].path, ["inputs"]);
    }

    #[test]
    fn nan_bounds_are_rejected() {
        let errors = plan("drop_outside = { temperature = [nan, 1.0] }").unwrap_err();
        assert_eq!(errors[0].path, ["drop_outside", "temperature", "0"]);
    }
}
