//! The options of `clean` ([`CleanConfig`]) and their checks against the input schema, which
//! produce the planned rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use super::keyed_config::{DedupSpec, FillSpec};

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use edgeflow_engine::schema::{event_time_column, timestamp_type};
use serde::Deserialize;

use super::rowwise::{
    Case, ClipRule, LinearRule, NormalizeRule, NullRule, Operand, Range, RangeRule,
};
use super::timestamps::{DEFAULT_FORMATS, TimeFormat, TimestampParser};
use super::units::{self, Conversion};
use super::{Clean, CleanPlan, Label, REASON, TimestampRule};
use crate::fields::{Numeric, error_at, lookup, numeric, single_input, type_name};
use crate::options::OrderedMap;

/// Options of a `clean` operator. At least one rule must be given. Rules run in the order
/// documented in the module docs, whatever the order of the options in the file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanConfig {
    /// Text or number fields to read as timestamps: `{ field = { formats, timezone, into } }`.
    /// A non-null value no format reads rejects the row as `bad_timestamp`. Default: none.
    #[serde(default)]
    pub timestamps: OrderedMap<TimestampSpec>,
    /// String fields to normalise: `{ field = { trim, case, map } }`. Default: none.
    #[serde(default)]
    pub normalize: OrderedMap<NormalizeSpec>,
    /// Unit conversions: `{ field = { from = "degF", to = "degC" } }`; the field becomes
    /// float64. Default: none.
    #[serde(default)]
    pub convert: OrderedMap<ConvertSpec>,
    /// Linear calibration `value * scale + offset` per field, each a number or the name of
    /// a numeric field (per device, such as one added by `enrich`). Default: none.
    #[serde(default)]
    pub calibrate: OrderedMap<CalibrateSpec>,
    /// Fields that must hold a value: a row whose value in any of them is null (or NaN, for a
    /// float field) is rejected as `null_field`. Default: none.
    #[serde(default)]
    pub drop_null: Vec<String>,
    /// Inclusive `[min, max]` range per numeric field: a row whose value lies outside is
    /// rejected as `out_of_range`. Null and NaN values pass. Integer fields are compared
    /// exactly (`[0.5, 10.5]` keeps 1 to 10). Default: none.
    #[serde(default)]
    pub drop_outside: OrderedMap<[f64; 2]>,
    /// Inclusive `[min, max]` range per numeric field: values outside are set to the nearer
    /// bound and counted as `clipped`. Default: none.
    #[serde(default)]
    pub clip: OrderedMap<[f64; 2]>,
    /// Key fields of the per-key rules (`max_rate_of_change`, `fill`); rows are exchanged so
    /// that each key lives on one worker. Default: none (one key for the whole stream).
    #[serde(default)]
    pub key: Vec<String>,
    /// Drops exact duplicates: `{ on = [fields], horizon = "10m" }`. Default: off.
    #[serde(default)]
    pub dedup: Option<DedupSpec>,
    /// Largest change per second per numeric field, compared with the key's latest accepted
    /// reading: a faster change rejects the row as `rate_of_change`. Default: none.
    #[serde(default)]
    pub max_rate_of_change: OrderedMap<f64>,
    /// Missing values to fill per numeric field: `{ field = { method, value, max_gap, last } }`;
    /// adds a bool column `<field>_filled`. Default: none.
    #[serde(default)]
    pub fill: OrderedMap<FillSpec>,
    /// How long a key's readings are kept after its latest event time (per-key rules).
    /// Default: `"1h"`.
    #[serde(
        default = "default_ttl",
        deserialize_with = "edgeflow_engine::config::duration"
    )]
    pub state_ttl: Duration,
    /// Most keys (and most `dedup` combinations) kept per worker; the oldest beyond it are
    /// forgotten and counted as `evicted_keys`. Default: 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

const fn default_ttl() -> Duration {
    Duration::from_secs(3_600)
}

const fn default_max_keys() -> usize {
    100_000
}

/// `timestamps.<field>`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSpec {
    /// Formats tried in order: `rfc3339`, `iso8601`, `epoch`, `epoch_s`, `epoch_ms`,
    /// `epoch_us`, `epoch_ns`, or a chrono format string. Default: rfc3339, iso8601, epoch,
    /// `%Y/%m/%d %H:%M`, `%Y/%m/%d %H:%M:%S`, `%d-%b-%Y %H:%M:%S`.
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// Time zone of times written without an offset (IANA name). Default: `"UTC"`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Name of a new `timestamp_ms` column to write; default: the field itself is replaced.
    #[serde(default)]
    pub into: Option<String>,
}

/// `normalize.<field>`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeSpec {
    /// Remove leading and trailing white space. Default: false.
    #[serde(default)]
    pub trim: bool,
    /// `"lower"` or `"upper"`. Default: unchanged.
    #[serde(default)]
    pub case: Option<String>,
    /// Whole values replaced after trimming and case: `{ "1" = "on", "true" = "on" }`.
    /// Replacements are counted as `mapped`. Default: none.
    #[serde(default)]
    pub map: OrderedMap<String>,
}

/// `convert.<field>`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertSpec {
    /// Unit of the input (`degF`, `psi`, `km/h`, …).
    pub from: String,
    /// Unit wanted (of the same quantity).
    pub to: String,
}

/// A number, or the name of a numeric field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum NumberOrField {
    /// A fixed number.
    Number(f64),
    /// A field of the row.
    Field(String),
}

/// `calibrate.<field>`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrateSpec {
    /// Factor (number or field name). Default: 1.
    #[serde(default)]
    pub scale: Option<NumberOrField>,
    /// Added after scaling (number or field name). Default: 0.
    #[serde(default)]
    pub offset: Option<NumberOrField>,
}

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Collects labels and errors while planning.
pub(super) struct Planner<'a> {
    pub(super) schema: &'a Schema,
    pub(super) errors: Vec<OptionError>,
    pub(super) labels: Vec<Label>,
}

impl Planner<'_> {
    pub(super) fn label(&mut self, metric: &'static str, field: Option<&str>) -> u16 {
        let text = match field {
            Some(field) => format!("{metric}:{field}"),
            None => metric.to_string(),
        };
        self.labels.push(Label { metric, text });
        (self.labels.len() - 1) as u16
    }

    fn lookup(&mut self, name: &str, path: &[&str]) -> Option<(usize, Field)> {
        match lookup(self.schema, name, path) {
            Ok((index, field)) => Some((index, field.clone())),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// A numeric field, or an error saying what the option needs.
    fn numeric(&mut self, name: &str, path: &[&str], option: &str) -> Option<(usize, Numeric)> {
        let (index, field) = self.lookup(name, path)?;
        match numeric(field.data_type()) {
            Some(class) => Some((index, class)),
            None => {
                self.errors.push(
                    error_at(
                        path,
                        format!(
                            "{option} needs a numeric field, but '{name}' is {}",
                            type_name(field.data_type())
                        ),
                    )
                    .with_hint(format!("{option} takes int or float fields")),
                );
                None
            }
        }
    }

    fn range(
        &mut self,
        name: &str,
        [min, max]: [f64; 2],
        class: Numeric,
        option: &str,
    ) -> Option<Range> {
        if min.is_nan() || max.is_nan() {
            let bad = if min.is_nan() { "0" } else { "1" };
            self.errors.push(error_at(
                &[option, name, bad],
                format!("range bounds of '{name}' must be numbers, not NaN"),
            ));
            return None;
        }
        if min > max {
            self.errors.push(
                error_at(
                    &[option, name],
                    format!("empty range [{min}, {max}] for '{name}': min is above max"),
                )
                .with_hint(format!("did you mean [{max}, {min}]?")),
            );
            return None;
        }
        Some(match class {
            Numeric::Float => Range::Float { min, max },
            // Float-to-int `as` saturates, so infinite bounds become i64::MIN / MAX.
            Numeric::Int => Range::Int {
                min: min.ceil() as i64,
                max: max.floor() as i64,
            },
        })
    }

    pub(super) fn duration_positive(&mut self, path: &[&str], value: Duration) -> i64 {
        if value.is_zero() {
            self.errors.push(error_at(path, "must be longer than 0s"));
        }
        millis(value)
    }
}

impl CleanConfig {
    fn has_rule(&self) -> bool {
        !(self.timestamps.is_empty()
            && self.normalize.is_empty()
            && self.convert.is_empty()
            && self.calibrate.is_empty()
            && self.drop_null.is_empty()
            && self.drop_outside.is_empty()
            && self.clip.is_empty()
            && self.dedup.is_none()
            && self.max_rate_of_change.is_empty()
            && self.fill.is_empty())
    }

    /// Checks the options against the input schema and returns the operator.
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    pub fn build(&self, inputs: &[SchemaRef]) -> Result<Clean, Vec<OptionError>> {
        let schema = single_input("clean", inputs).map_err(|e| vec![e])?;
        let mut p = Planner {
            schema,
            errors: Vec::new(),
            labels: vec![Label {
                metric: "",
                text: String::new(),
            }],
        };
        if !self.has_rule() {
            p.errors.push(
                OptionError::at("", "a 'clean' operator needs at least one rule").with_hint(
                    "add drop_null = [\"field\"] or drop_outside = { field = [min, max] }",
                ),
            );
        }
        let event_time = event_time_column(schema).map(|(i, _)| i);
        // The fields of the batch as the rules leave it (before `<field>_filled` columns).
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        // Input fields a transform changes (they may not be keys).
        let mut transformed: Vec<usize> = Vec::new();

        let mut timestamps = Vec::new();
        for (name, spec) in self.timestamps.iter() {
            let path = ["timestamps", name];
            let Some((column, field)) = p.lookup(name, &path) else {
                continue;
            };
            let usable = matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Timestamp(..)
            ) || numeric(field.data_type()).is_some();
            if !usable {
                p.errors.push(error_at(
                    &path,
                    format!(
                        "cannot read {} field '{name}' as a timestamp",
                        type_name(field.data_type())
                    ),
                ));
                continue;
            }
            let mut formats = Vec::new();
            let names: Vec<String> = match &spec.formats {
                Some(list) => list.clone(),
                None => DEFAULT_FORMATS.iter().map(|s| s.to_string()).collect(),
            };
            if names.is_empty() {
                p.errors.push(error_at(
                    &["timestamps", name, "formats"],
                    "needs at least one format",
                ));
            }
            for (i, format) in names.iter().enumerate() {
                match TimeFormat::parse(format) {
                    Ok(f) => formats.push(f),
                    Err(message) => p.errors.push(error_at(
                        &["timestamps", name, "formats", &i.to_string()],
                        message,
                    )),
                }
            }
            let zone = spec.timezone.as_deref().unwrap_or("UTC");
            let timezone = match zone.parse::<chrono_tz::Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    p.errors.push(
                        error_at(
                            &["timestamps", name, "timezone"],
                            format!("unknown time zone '{zone}'"),
                        )
                        .with_hint("use an IANA name such as \"Europe/Berlin\" or \"UTC\""),
                    );
                    continue;
                }
            };
            let output = match &spec.into {
                None => {
                    if Some(column) == event_time {
                        p.errors.push(error_at(
                            &path,
                            "the event-time field is already a timestamp",
                        ));
                        continue;
                    }
                    transformed.push(column);
                    fields[column] = Field::new(name, timestamp_type(), true);
                    column
                }
                Some(into) => {
                    if fields.iter().any(|f| f.name() == into) {
                        p.errors.push(error_at(
                            &["timestamps", name, "into"],
                            format!("'{into}' is already a field; pick a new name"),
                        ));
                        continue;
                    }
                    fields.push(Field::new(into, timestamp_type(), true));
                    fields.len() - 1
                }
            };
            let label = p.label("bad_timestamp", Some(name));
            timestamps.push(TimestampRule {
                input: column,
                output,
                parser: TimestampParser { formats, timezone },
                label,
            });
        }

        let mut normalize = Vec::new();
        for (name, spec) in self.normalize.iter() {
            let path = ["normalize", name];
            let Some((column, field)) = p.lookup(name, &path) else {
                continue;
            };
            if !matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                p.errors.push(error_at(
                    &path,
                    format!(
                        "normalize needs a string field, but '{name}' is {}",
                        type_name(field.data_type())
                    ),
                ));
                continue;
            }
            let case = match spec.case.as_deref() {
                None => Case::Keep,
                Some("lower") => Case::Lower,
                Some("upper") => Case::Upper,
                Some(other) => {
                    p.errors.push(
                        error_at(
                            &["normalize", name, "case"],
                            format!("unknown case '{other}'"),
                        )
                        .with_hint("use \"lower\" or \"upper\""),
                    );
                    continue;
                }
            };
            if !spec.trim && case == Case::Keep && spec.map.is_empty() {
                p.errors.push(
                    error_at(&path, format!("nothing to do for '{name}'"))
                        .with_hint("set trim = true, case = \"lower\" or a map"),
                );
                continue;
            }
            transformed.push(column);
            normalize.push(NormalizeRule {
                column,
                trim: spec.trim,
                case,
                map: spec
                    .map
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            });
        }

        let mut linear = Vec::new();
        for (name, spec) in self.convert.iter() {
            let path = ["convert", name];
            let Some((column, _)) = p.numeric(name, &path, "convert") else {
                continue;
            };
            let unit = |which: &str, text: &str, p: &mut Planner<'_>| {
                let found = units::find(text);
                if found.is_none() {
                    p.errors.push(
                        error_at(&["convert", name, which], format!("unknown unit '{text}'"))
                            .suggest(text, units::canonical_names()),
                    );
                }
                found
            };
            let (Some(from), Some(to)) = (
                unit("from", &spec.from, &mut p),
                unit("to", &spec.to, &mut p),
            ) else {
                continue;
            };
            let Some(conversion) = Conversion::between(from, to) else {
                p.errors.push(error_at(
                    &path,
                    format!(
                        "cannot convert {} ('{}') to {} ('{}')",
                        from.quantity.name(),
                        spec.from,
                        to.quantity.name(),
                        spec.to
                    ),
                ));
                continue;
            };
            transformed.push(column);
            fields[column] = Field::new(name, DataType::Float64, true);
            linear.push(LinearRule::Convert { column, conversion });
        }
        for (name, spec) in self.calibrate.iter() {
            let path = ["calibrate", name];
            let Some((column, _)) = p.numeric(name, &path, "calibrate") else {
                continue;
            };
            let operand = |which: &str,
                           value: &Option<NumberOrField>,
                           default: f64,
                           p: &mut Planner<'_>| match value {
                None => Some(Operand::Value(default)),
                Some(NumberOrField::Number(v)) if v.is_finite() => Some(Operand::Value(*v)),
                Some(NumberOrField::Number(v)) => {
                    p.errors.push(error_at(
                        &["calibrate", name, which],
                        format!("{which} must be a finite number, not {v}"),
                    ));
                    None
                }
                Some(NumberOrField::Field(field)) => p
                    .numeric(field, &["calibrate", name, which], "calibrate")
                    .map(|(c, _)| Operand::Column(c)),
            };
            let scale = operand("scale", &spec.scale, 1.0, &mut p);
            let offset = operand("offset", &spec.offset, 0.0, &mut p);
            let (Some(scale), Some(offset)) = (scale, offset) else {
                continue;
            };
            transformed.push(column);
            fields[column] = Field::new(name, DataType::Float64, true);
            linear.push(LinearRule::Calibrate {
                column,
                scale,
                offset,
            });
        }

        // The checks and later rules see the transformed fields: look them up there.
        let transformed_schema = Schema::new(fields.clone());
        let mut nulls: Vec<NullRule> = Vec::new();
        for (position, name) in self.drop_null.iter().enumerate() {
            let position = position.to_string();
            let Ok((column, field)) = lookup(&transformed_schema, name, &["drop_null", &position])
                .map_err(|e| p.errors.push(e))
            else {
                continue;
            };
            if nulls.iter().all(|rule| rule.column != column) {
                let nan_too = numeric(field.data_type()) == Some(Numeric::Float);
                let label = p.label("null_field", Some(name));
                nulls.push(NullRule {
                    column,
                    nan_too,
                    label,
                });
            }
        }
        let mut ranges = Vec::new();
        let mut clips = Vec::new();
        for (option, map) in [("drop_outside", &self.drop_outside), ("clip", &self.clip)] {
            for (name, bounds) in map.iter() {
                let path = [option, name];
                let Ok((column, field)) =
                    lookup(&transformed_schema, name, &path).map_err(|e| p.errors.push(e))
                else {
                    continue;
                };
                let Some(class) = numeric(field.data_type()) else {
                    let message = if option == "drop_outside" {
                        format!(
                            "cannot check the range of {} field '{name}'",
                            type_name(field.data_type())
                        )
                    } else {
                        format!(
                            "cannot clip {} field '{name}'",
                            type_name(field.data_type())
                        )
                    };
                    p.errors.push(
                        error_at(&path, message)
                            .with_hint(format!("{option} takes numeric (int or float) fields")),
                    );
                    continue;
                };
                let Some(range) = p.range(name, *bounds, class, option) else {
                    continue;
                };
                if option == "drop_outside" {
                    let label = p.label("out_of_range", Some(name));
                    ranges.push(RangeRule {
                        column,
                        range,
                        label,
                    });
                } else {
                    clips.push(ClipRule { column, range });
                }
            }
        }

        let keyed = self.plan_keyed(&mut p, &transformed_schema, &transformed, &mut fields);

        if !p.errors.is_empty() {
            return Err(p.errors);
        }
        let mut rejected_fields: Vec<Field> =
            schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        rejected_fields.push(Field::new(REASON, DataType::Utf8, false));
        let (keyed, exchange) = keyed.unwrap_or((None, None));
        let plan = CleanPlan {
            transformed_schema: Arc::new(Schema::new_with_metadata(
                transformed_schema.fields().clone(),
                schema.metadata().clone(),
            )),
            output_schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            rejected_schema: Arc::new(Schema::new_with_metadata(
                rejected_fields,
                schema.metadata().clone(),
            )),
            event_time,
            labels: p.labels,
            timestamps,
            normalize,
            linear,
            nulls,
            ranges,
            clips,
            keyed: keyed.map(Arc::new),
            exchange,
        };
        Ok(Clean {
            plan: Arc::new(plan),
        })
    }
}
