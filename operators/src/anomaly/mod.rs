//! The `anomaly` operator: per-key streaming anomaly detection with bounded state.
//!
//! ```toml
//! [operators.hot]
//! type = "anomaly"
//! inputs = ["sensors"]
//! method = "mad"                # zscore, ewma, mad, spike_dip, change_point, flatline,
//!                               # gap, rate_of_change, threshold, ensemble
//! group_by = ["device_id"]
//! value = "temperature"         # a numeric field or an expression
//! window = 100                  # or a duration: "1h"
//! threshold = 3.5
//! ```
//!
//! Every input row is emitted once with four columns appended: `anomaly_score` (float64 in
//! [0, 1], null when the value is null or NaN), `is_anomaly` (bool), `method` (string) and
//! `reason` (a sentence with the numbers, for anomalies only; null otherwise). A `filter`
//! with `is_anomaly` after it keeps the alerts.
//!
//! # When to use which method
//!
//! | method | catches | state per key |
//! |---|---|---|
//! | `threshold` | values outside fixed limits, or limits from columns (a device registry) | none |
//! | `zscore` | values far from the recent mean, in standard deviations | window |
//! | `ewma` | the same with exponential forgetting; L-sigma control chart | 3 numbers |
//! | `mad` | like `zscore` but robust to earlier outliers (median, MAD) | window, sorted |
//! | `spike_dip` | values ranked beyond the recent history; p-value-like score | history, sorted |
//! | `change_point` | sustained shifts of level or variance (CUSUMs) | window |
//! | `flatline` | a stuck sensor: no variation beyond `epsilon` for `duration` | 3 numbers |
//! | `gap` | a key silent for `duration`, found by the watermark | deadline |
//! | `rate_of_change` | \|dv/dt\| above `max_rate` per second | last row |
//! | `ensemble` | members combined by `max`, `mean` or `vote` | members' |
//!
//! Each worker holds at most `max_keys` keys (default 100,000): past it, and while the
//! pipeline is over its `memory_limit`, the least recently seen keys (by their latest event
//! time) are forgotten and counted in the node's `forgotten_keys` value. A forgotten key that
//! reports again starts over, warm-up included.
//!
//! # Order, warm-up and time
//!
//! Rows are exchanged by key and judged in event-time order: the operator buffers rows until
//! the watermark passes them (see `state`), so the result does not depend on arrival order
//! or worker count. Rows behind the watermark when they arrive are late: they go unjudged to
//! the `late` side output and are counted. Output rows are stamped with the watermark at which
//! they were judged. Each key reports nothing (score 0) during its first `warmup` rows.
//!
//! The per-method details and the measured quality on labelled data are in `docs/anomaly.md`.

use std::sync::Arc;

use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::schema::event_time_column;
use edgeflow_engine::{DataflowOperator, OptionError, parse_options};

use crate::expr::Expr;
use crate::fields::{error_at, lookup, numeric, single_input, type_name};
use crate::{OperatorConfig, OperatorKind};

mod change_point;
mod detector;
mod keys;
mod operator;
pub mod options;
mod rules;
mod sorted;
mod spike_dip;
mod state;
mod statistical;
mod stats;

pub use operator::{FORGOTTEN_KEYS, LATE, MISSING_VALUE};
pub use options::{AnomalyConfig, MethodSpec};

/// Output column: how unusual the value is, in [0, 1].
pub const ANOMALY_SCORE: &str = "anomaly_score";
/// Output column: whether the method's limit was crossed.
pub const IS_ANOMALY: &str = "is_anomaly";
/// Output column: the method's name.
pub const METHOD: &str = "method";
/// Output column: why, with the numbers (anomalies only).
pub const REASON: &str = "reason";

/// Keys one worker holds when `max_keys` is not set (as for `window` and `clean`).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The `anomaly` operator kind.
pub const KIND: OperatorKind = OperatorKind {
    name: "anomaly",
    summary: "Scores each row against its key's recent values (zscore, mad, ewma, …)",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn OperatorConfig>, OptionError> {
    Ok(Box::new(parse_options::<AnomalyConfig>(table)?))
}

/// Where the watched value comes from.
#[derive(Clone, Debug)]
pub(crate) enum ValueSource {
    /// A numeric field.
    Column(usize),
    /// An expression of numeric type.
    Expr(Arc<Expr>),
}

/// The checked plan an [`Anomaly`] operator runs.
#[derive(Debug)]
pub(crate) struct AnomalyPlan {
    pub input_schema: SchemaRef,
    pub output_schema: SchemaRef,
    pub event_time: usize,
    pub keys: Vec<usize>,
    pub value: ValueSource,
    /// Columns `threshold` reads its limits from, in the order `Limit::Column` indexes them.
    pub limit_columns: Vec<usize>,
    pub spec: MethodSpec,
    pub warmup: u64,
    /// After an anomaly, ms during which the key's later anomalies are suppressed.
    pub cooldown_ms: Option<i64>,
    /// Estimated bytes per key outside its detector (hash entry, key bytes, bookkeeping).
    pub key_overhead: usize,
    /// Most keys one worker holds; beyond it the least recently seen are forgotten.
    pub max_keys: usize,
}

/// The planned `anomaly` operator.
#[derive(Debug)]
pub struct Anomaly {
    plan: Arc<AnomalyPlan>,
}

impl Anomaly {
    /// The checked method and its warm-up.
    pub fn method(&self) -> (&MethodSpec, u64) {
        (&self.plan.spec, self.plan.warmup)
    }
}

struct SchemaLimits<'a> {
    schema: &'a Schema,
    columns: Vec<usize>,
}

impl options::LimitColumns for SchemaLimits<'_> {
    fn limit_column(&mut self, name: &str, path: &[String]) -> Result<usize, OptionError> {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let (index, field) = lookup(self.schema, name, &path)?;
        if numeric(field.data_type()).is_none() {
            return Err(error_at(
                &path,
                format!(
                    "the limit column '{name}' is {}, not a number",
                    type_name(field.data_type())
                ),
            ));
        }
        Ok(match self.columns.iter().position(|&c| c == index) {
            Some(at) => at,
            None => {
                self.columns.push(index);
                self.columns.len() - 1
            }
        })
    }
}

impl OperatorConfig for AnomalyConfig {
    fn plan(&self, inputs: &[SchemaRef]) -> Result<Arc<dyn DataflowOperator>, Vec<OptionError>> {
        Ok(Arc::new(self.build(inputs)?))
    }
}

impl AnomalyConfig {
    /// Checks the options against the input schema and returns the operator.
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    pub fn build(&self, inputs: &[SchemaRef]) -> Result<Anomaly, Vec<OptionError>> {
        let input = single_input("anomaly", inputs).map_err(|e| vec![e])?;
        let input_schema = inputs[0].clone();
        let mut errors = Vec::new();
        let event_time = match event_time_column(input) {
            Some((index, _)) => Some(index),
            None => {
                errors.push(
                    OptionError::at(
                        "inputs",
                        "the 'anomaly' operator needs an input with an event-time column",
                    )
                    .with_hint("name one in the source's 'event_time' option"),
                );
                None
            }
        };
        let mut keys = Vec::new();
        for (i, name) in self.group_by.iter().enumerate() {
            let path = ["group_by".to_string(), i.to_string()];
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            match lookup(input, name, &path) {
                Ok((index, _)) if keys.contains(&index) => {
                    errors.push(error_at(&path, format!("'{name}' is listed twice")));
                }
                Ok((index, _)) => keys.push(index),
                Err(e) => errors.push(e),
            }
        }
        let mut limits = SchemaLimits {
            schema: input,
            columns: Vec::new(),
        };
        let method = self.method_spec(&[], &mut limits, &mut errors);
        let is_gap = self.method == "gap";
        let cooldown_ms = match self
            .cooldown
            .as_deref()
            .map(edgeflow_engine::time::parse_duration)
        {
            None => None,
            Some(Ok(d)) => Some(d.as_millis().min(i64::MAX as u128) as i64),
            Some(Err(e)) => {
                errors.push(OptionError::at("cooldown", e));
                None
            }
        };
        let max_keys = match self.max_keys {
            Some(0) => {
                errors.push(OptionError::at("max_keys", "'max_keys' must be at least 1"));
                1
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_KEYS,
        };
        let value = match self.value.as_deref() {
            None if is_gap => Some(ValueSource::Expr(Arc::new(
                Expr::compile("cast(null as float64)", input)
                    .map_err(|e| vec![e.into_option_error(&["value"], "cast(null as float64)")])?,
            ))),
            None => {
                errors.push(
                    OptionError::at("value", "the 'anomaly' operator needs 'value'")
                        .with_hint("a numeric field or an expression: value = \"temperature\""),
                );
                None
            }
            Some(text) => self.value_source(input, text, &mut errors),
        };
        let (Some((spec, warmup)), Some(value), Some(event_time)) = (method, value, event_time)
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        for name in [ANOMALY_SCORE, IS_ANOMALY, METHOD, REASON] {
            if input.index_of(name).is_ok() {
                return Err(vec![
                    OptionError::at(
                        "inputs",
                        format!("the input already has a field '{name}', which 'anomaly' adds"),
                    )
                    .with_hint("rename it with a 'derive' before this operator"),
                ]);
            }
        }
        let gap = spec.gap_ms().is_some();
        let mut fields: Vec<Field> = input
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                // Gap rows carry only the key and the time; every other column is null there.
                let nullable = f.is_nullable() || (gap && i != event_time && !keys.contains(&i));
                f.as_ref().clone().with_nullable(nullable)
            })
            .collect();
        fields.push(Field::new(ANOMALY_SCORE, DataType::Float64, true));
        fields.push(Field::new(IS_ANOMALY, DataType::Boolean, false));
        fields.push(Field::new(METHOD, DataType::Utf8, false));
        fields.push(Field::new(REASON, DataType::Utf8, true));
        let output_schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        let key_overhead = 64 + if keys.is_empty() { 0 } else { 48 };
        Ok(Anomaly {
            plan: Arc::new(AnomalyPlan {
                input_schema,
                output_schema,
                event_time,
                keys,
                value,
                limit_columns: limits.columns,
                spec,
                warmup,
                cooldown_ms,
                key_overhead,
                max_keys,
            }),
        })
    }

    fn value_source(
        &self,
        input: &Schema,
        text: &str,
        errors: &mut Vec<OptionError>,
    ) -> Option<ValueSource> {
        if let Ok(index) = input.index_of(text) {
            let data_type = input.field(index).data_type();
            if numeric(data_type).is_some() {
                return Some(ValueSource::Column(index));
            }
            errors.push(error_at(
                &["value"],
                format!("'{text}' is {}, not a number", type_name(data_type)),
            ));
            return None;
        }
        match Expr::compile(text, input) {
            Ok(expr) if numeric(expr.data_type()).is_some() => {
                Some(ValueSource::Expr(Arc::new(expr)))
            }
            Ok(expr) => {
                errors.push(error_at(
                    &["value"],
                    format!(
                        "the expression '{text}' gives {}, not a number",
                        type_name(expr.data_type())
                    ),
                ));
                None
            }
            Err(e) => {
                errors.push(e.into_option_error(&["value"], text));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
