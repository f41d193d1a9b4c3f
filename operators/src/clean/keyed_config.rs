//! The options of the per-key rules of `clean` (`dedup`, `fill`) and their planning.

use std::time::Duration;

use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema};
use edgeflow_engine::arrow::row::SortField;
use edgeflow_engine::schema::{event_time_column, timestamp_type};
use serde::Deserialize;

use super::config::{CleanConfig, Planner};
use super::keyed::{DedupRule, FillMethod, FillRule, KeyedPlan, RateRule};
use crate::fields::{Numeric, error_at, lookup, numeric, type_name};

/// `dedup`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// Fields compared; rows equal in all of them are duplicates. Must include `key`.
    /// Default: every field of the input.
    #[serde(default)]
    pub on: Option<Vec<String>>,
    /// How long (event time, behind the watermark) a row is remembered. Default: `"10m"`.
    #[serde(
        default = "default_horizon",
        deserialize_with = "edgeflow_engine::config::duration"
    )]
    pub horizon: Duration,
}

const fn default_horizon() -> Duration {
    Duration::from_secs(600)
}

/// `fill.<field>`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillSpec {
    /// `"previous"` (the key's latest reading), `"mean"` (of its `last` latest readings),
    /// `"linear"` (interpolated between the key's readings before and after, holding the row
    /// until the next one arrives) or `"constant"` (`value`). Default: `"previous"`.
    #[serde(default)]
    pub method: Option<String>,
    /// The value for `method = "constant"`.
    #[serde(default)]
    pub value: Option<f64>,
    /// Readings further than this (event time) from the missing one are not used.
    /// Default: `"5m"`.
    #[serde(
        default = "default_gap",
        deserialize_with = "edgeflow_engine::config::duration"
    )]
    pub max_gap: Duration,
    /// How many latest readings `mean` averages. Default: 5.
    #[serde(default)]
    pub last: Option<usize>,
    /// `linear` only: most rows held per key while they wait for the next reading; past it
    /// the oldest held row leaves unfilled (counted as `unfilled` and `fill_overflow`).
    /// Default: 1000.
    #[serde(default)]
    pub max_held: Option<usize>,
}

const DEFAULT_MAX_HELD: usize = 1_000;

const fn default_gap() -> Duration {
    Duration::from_secs(300)
}

impl CleanConfig {
    /// Plans `key`, `dedup`, `max_rate_of_change` and `fill`; adds the `<field>_filled`
    /// columns to `fields`. Returns the plan (if any rule) and the exchange columns.
    #[allow(clippy::type_complexity)]
    pub(super) fn plan_keyed(
        &self,
        p: &mut Planner<'_>,
        schema: &Schema,
        transformed: &[usize],
        fields: &mut Vec<Field>,
    ) -> Option<(Option<KeyedPlan>, Option<Vec<usize>>)> {
        let errors_before = p.errors.len();
        let mut key = Vec::new();
        for (i, name) in self.key.iter().enumerate() {
            let path = ["key".to_string(), i.to_string()];
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let Ok((column, _)) = lookup(schema, name, &path).map_err(|e| p.errors.push(e)) else {
                continue;
            };
            if transformed.contains(&column) || column >= p.schema.fields().len() {
                p.errors.push(
                    error_at(&path, format!("the key field '{name}' is changed by this operator"))
                        .with_hint("rows are routed by their key as it arrives: normalise it in an earlier 'clean'"),
                );
                continue;
            }
            key.push(column);
        }

        let dedup = self.dedup.as_ref().map(|spec| {
            let columns: Vec<usize> = match &spec.on {
                None => (0..schema.fields().len()).collect(),
                Some(names) => names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, name)| {
                        lookup(schema, name, &["dedup", "on", &i.to_string()])
                            .map(|(c, _)| c)
                            .map_err(|e| p.errors.push(e))
                            .ok()
                    })
                    .collect(),
            };
            if columns.is_empty() {
                p.errors
                    .push(error_at(&["dedup", "on"], "needs at least one field"));
            }
            for (&k, name) in key.iter().zip(&self.key) {
                if !columns.contains(&k) {
                    p.errors.push(
                        error_at(
                            &["dedup", "on"],
                            format!("must include the key field '{name}'"),
                        )
                        .with_hint("duplicates are found per key"),
                    );
                }
            }
            let horizon_ms = p.duration_positive(&["dedup", "horizon"], spec.horizon);
            let label = p.label("duplicate", None);
            // With the event time among the compared fields (and unchanged by this operator),
            // the other fields name a small set of times instead of one entry per row.
            let by_time = event_time_column(p.schema)
                .map(|(c, _)| c)
                .filter(|c| columns.contains(c) && !transformed.contains(c))
                .filter(|&c| schema.field(c).data_type() == &timestamp_type());
            DedupRule {
                columns,
                by_time,
                horizon_ms,
                label,
            }
        });

        let mut rates = Vec::new();
        for (name, &per_second) in self.max_rate_of_change.iter() {
            let path = ["max_rate_of_change", name];
            let Ok((column, field)) = lookup(schema, name, &path).map_err(|e| p.errors.push(e))
            else {
                continue;
            };
            if numeric(field.data_type()).is_none() {
                p.errors.push(error_at(
                    &path,
                    format!(
                        "max_rate_of_change needs a numeric field, but '{name}' is {}",
                        type_name(field.data_type())
                    ),
                ));
                continue;
            }
            if !(per_second.is_finite() && per_second >= 0.0) {
                p.errors.push(error_at(
                    &path,
                    format!("the largest change per second must be a number ≥ 0, not {per_second}"),
                ));
                continue;
            }
            let label = p.label("rate_of_change", Some(name));
            rates.push(RateRule {
                column,
                per_second,
                label,
            });
        }

        let mut fills = Vec::new();
        let mut max_gap = 0;
        for (name, spec) in self.fill.iter() {
            let path = ["fill", name];
            let Ok((column, field)) = lookup(schema, name, &path).map_err(|e| p.errors.push(e))
            else {
                continue;
            };
            if numeric(field.data_type()).is_none() {
                p.errors.push(error_at(
                    &path,
                    format!(
                        "fill needs a numeric field, but '{name}' is {}",
                        type_name(field.data_type())
                    ),
                ));
                continue;
            }
            if self.drop_null.iter().any(|n| n == name) {
                p.errors.push(error_at(&path, format!("'{name}' is also in drop_null, which runs first: nothing would be left to fill")));
                continue;
            }
            let method_name = spec.method.as_deref().unwrap_or("previous");
            if spec.max_held.is_some() && method_name != "linear" {
                p.errors.push(error_at(
                    &["fill", name, "max_held"],
                    "max_held is only used with method = \"linear\"",
                ));
                continue;
            }
            let method = match (method_name, spec.value) {
                ("previous", None) => FillMethod::Previous,
                ("mean", None) => {
                    let last = spec.last.unwrap_or(5);
                    if last == 0 {
                        p.errors
                            .push(error_at(&["fill", name, "last"], "must be at least 1"));
                        continue;
                    }
                    FillMethod::Mean { last }
                }
                ("linear", None) => {
                    let max_held = spec.max_held.unwrap_or(DEFAULT_MAX_HELD);
                    if max_held == 0 {
                        p.errors
                            .push(error_at(&["fill", name, "max_held"], "must be at least 1"));
                        continue;
                    }
                    FillMethod::Linear { max_held }
                }
                ("constant", Some(value)) if value.is_finite() => FillMethod::Constant(value),
                ("constant", _) => {
                    p.errors.push(error_at(
                        &["fill", name, "value"],
                        "method = \"constant\" needs a finite value = <number>",
                    ));
                    continue;
                }
                ("previous" | "mean" | "linear", Some(_)) => {
                    p.errors.push(error_at(
                        &["fill", name, "value"],
                        "value is only used with method = \"constant\"",
                    ));
                    continue;
                }
                (other, _) => {
                    p.errors.push(
                        error_at(
                            &["fill", name, "method"],
                            format!("unknown fill method '{other}'"),
                        )
                        .with_hint("use \"previous\", \"linear\", \"mean\" or \"constant\""),
                    );
                    continue;
                }
            };
            let max_gap_ms = p.duration_positive(&["fill", name, "max_gap"], spec.max_gap);
            max_gap = max_gap.max(max_gap_ms);
            let marker = format!("{name}_filled");
            if fields.iter().any(|f| f.name() == &marker) {
                p.errors.push(error_at(
                    &path,
                    format!("the marker column '{marker}' is already a field"),
                ));
                continue;
            }
            fields.push(Field::new(marker, DataType::Boolean, false));
            fills.push(FillRule {
                column,
                method,
                max_gap_ms,
                integer: matches!(numeric(field.data_type()), Some(Numeric::Int)),
            });
        }
        if self.max_keys == 0 {
            p.errors.push(error_at(&["max_keys"], "must be at least 1"));
        }
        let state_ttl_ms = p
            .duration_positive(&["state_ttl"], self.state_ttl)
            .max(max_gap);

        if p.errors.len() > errors_before {
            return None;
        }
        if dedup.is_none() && rates.is_empty() && fills.is_empty() {
            if !key.is_empty() {
                p.errors.push(
                    error_at(
                        &["key"],
                        "key is only used by dedup, max_rate_of_change and fill",
                    )
                    .with_hint("remove it, or add a per-key rule"),
                );
            }
            return Some((None, None));
        }
        let exchange = if !key.is_empty() {
            key.clone()
        } else if let Some(dedup) = &dedup {
            // Only a dedup: rows equal in the compared fields must meet. Fields a transform
            // changes may differ before it, so route by the unchanged ones.
            let stateful = !rates.is_empty()
                || fills
                    .iter()
                    .any(|f| !matches!(f.method, FillMethod::Constant(_)));
            if stateful {
                Vec::new()
            } else {
                let input_len = p.schema.fields().len();
                dedup
                    .columns
                    .iter()
                    .copied()
                    .filter(|c| !transformed.contains(c) && *c < input_len)
                    .collect()
            }
        } else {
            Vec::new()
        };
        let sort = |columns: &[usize]| -> Vec<SortField> {
            columns
                .iter()
                .map(|&c| SortField::new(schema.field(c).data_type().clone()))
                .collect()
        };
        let plan = KeyedPlan {
            key_fields: sort(&key),
            key,
            dedup_types: dedup
                .as_ref()
                .map(|d| {
                    d.compared_besides_time()
                        .iter()
                        .map(|&c| schema.field(c).data_type().clone())
                        .collect()
                })
                .unwrap_or_default(),
            dedup,
            rates,
            fills,
            state_ttl_ms,
            max_keys: self.max_keys,
        };
        Some((Some(plan), Some(exchange)))
    }
}
