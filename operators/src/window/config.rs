//! [`WindowConfig`]: the options of a `window` operator, and their checks against the input
//! schema, which produce the [`WindowPlan`] every worker runs.

use std::sync::Arc;

use edgeflow_engine::OptionError;
use edgeflow_engine::arrow::datatypes::{DataType, Field, FieldRef, SchemaRef, TimeUnit};
use edgeflow_engine::schema::{event_time_column, schema_with_event_time, timestamp_type};
use serde::Deserialize;

use super::kind::{Alignment, DAY_MS, WindowKind};
use super::plan_aggregate::{AggregateSpec, plan_aggregate};
use crate::fields::{error_at, lookup, single_input, type_name};
use crate::options::OrderedMap;

/// Name of the output column holding each window's start (also its event-time column).
pub const WINDOW_START: &str = "window_start";
/// Name of the output column holding each window's end (exclusive).
pub const WINDOW_END: &str = "window_end";

/// Name of the output column numbering each emission of a window and key (from 0), present
/// with `allowed_lateness` or `emit_every`: keep the highest.
pub const REVISION: &str = "revision";
/// Name of the output column telling early firings (true) from rows emitted once the window
/// ended (false), present with `allowed_lateness` or `emit_every`.
pub const PROVISIONAL: &str = "provisional";

/// Keys held per worker when `max_keys` is not set.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The window kinds, in the order help texts list them.
pub const KINDS: [&str; 5] = ["tumbling", "hopping", "sliding", "session", "count"];

fn default_kind() -> String {
    KINDS[0].to_string()
}

/// Options of a `window` operator.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Window kind: `"tumbling"` (default), `"hopping"`, `"sliding"`, `"session"` or
    /// `"count"`. See the module documentation for what each one computes.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Window length, such as `"10s"`, `"500ms"` or `"5m"`: at least 1 ms and a whole number of
    /// milliseconds. Required by tumbling, hopping and sliding windows. Durations are kept as
    /// text and checked when planning, so that a bad one is reported together with every
    /// other bad option.
    #[serde(default)]
    pub size: Option<String>,
    /// Hopping windows: the distance between two window starts; `size` must be a multiple
    /// of it.
    #[serde(default)]
    pub slide: Option<String>,
    /// Session windows: a key's session ends after this long without an event. Required.
    #[serde(default)]
    pub gap: Option<String>,
    /// Session windows: a session that lasts this long is closed even if events keep coming
    /// (the next event starts a new one). Default: no limit.
    #[serde(default)]
    pub max_length: Option<String>,
    /// Count windows: the number of events per window and key. Required.
    #[serde(default)]
    pub count: Option<u64>,
    /// Tumbling and hopping windows: shifts window starts from the epoch (or from local
    /// midnight with `timezone`) by this much, such as `"15m"`. Default: none.
    #[serde(default)]
    pub offset: Option<String>,
    /// Tumbling and hopping windows: align windows to the wall clock of this IANA time zone
    /// (`"Europe/Berlin"`), daylight-saving changes included: a `"1d"` window runs from
    /// local midnight to local midnight (23 or 25 hours on the days the clocks change).
    /// Default: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `"event"` (default): windows follow the rows' event time and the watermark.
    /// `"processing"`: windows follow the gateway's clock when rows reach the operator.
    #[serde(default)]
    pub time: Option<String>,
    /// Tumbling and hopping windows: how long after its end a window still accepts late
    /// rows, each of which makes it emit its changed rows again with a higher `revision`.
    /// Default: `"0s"`.
    #[serde(default)]
    pub allowed_lateness: Option<String>,
    /// Tumbling and hopping windows: emit provisional rows every this much event time before
    /// the window ends (early firings). Default: only when the window ends.
    #[serde(default)]
    pub emit_every: Option<String>,
    /// Tumbling and hopping windows: emit a row with zero counts (and null aggregates) for
    /// every key seen before but silent in a window. Default: `false`.
    #[serde(default)]
    pub emit_empty: bool,
    /// Most group keys the operator holds state for (per worker); when a new key would pass
    /// it, the least recently updated key's state is emitted early and dropped, and counted
    /// as `evicted_keys`. Default: 100000.
    #[serde(default)]
    pub max_keys: Option<u64>,
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

/// Everything a worker needs to run the window.
#[derive(Clone, Debug)]
pub(crate) struct WindowPlan {
    /// The window kind and its parameters.
    pub kind: WindowKind,
    /// How long after its end a window accepts late rows (0: none).
    pub allowed_lateness_ms: i64,
    /// Early firings: provisional rows every this much event time before a window ends.
    pub emit_every_ms: Option<i64>,
    /// Emit rows for keys seen before but silent in a window.
    pub emit_empty: bool,
    /// Most keys held per worker.
    pub max_keys: usize,
    /// Windows follow the wall clock on arrival instead of event time.
    pub processing_time: bool,
    /// Whether the output has the `revision` and `provisional` columns.
    pub revisions: bool,
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

impl WindowPlan {
    /// The alignment of tumbling and hopping windows.
    ///
    /// # Panics
    /// For the other kinds, which the planner never gives the aligned-window operator.
    pub(crate) fn alignment(&self) -> &Alignment {
        match &self.kind {
            WindowKind::Aligned(alignment) => alignment,
            other => panic!("not an aligned window kind: {other:?}"),
        }
    }
}

impl WindowConfig {
    /// Reads the duration option `option` in whole milliseconds (`None` when absent or
    /// invalid, with the error pushed). `zero_ok` allows `"0s"`.
    fn duration(&self, option: &str, errors: &mut Vec<OptionError>, zero_ok: bool) -> Option<i64> {
        let text = match option {
            "size" => self.size.as_ref(),
            "slide" => self.slide.as_ref(),
            "gap" => self.gap.as_ref(),
            "max_length" => self.max_length.as_ref(),
            "offset" => self.offset.as_ref(),
            "allowed_lateness" => self.allowed_lateness.as_ref(),
            "emit_every" => self.emit_every.as_ref(),
            _ => unreachable!("not a duration option: {option}"),
        }?;
        match edgeflow_engine::time::parse_duration(text) {
            Err(message) => errors.push(OptionError::at(option, message)),
            Ok(d) if !d.subsec_nanos().is_multiple_of(1_000_000) || (d.is_zero() && !zero_ok) => {
                errors.push(OptionError::at(
                    option,
                    format!(
                        "'{option}' must be a whole number of milliseconds{}, got '{text}'",
                        if zero_ok { "" } else { ", at least 1ms" }
                    ),
                ))
            }
            Ok(d) if d.as_millis() > i64::MAX as u128 / 4 => errors.push(OptionError::at(
                option,
                format!("'{option}' '{text}' is too large"),
            )),
            Ok(d) => return Some(d.as_millis() as i64),
        }
        None
    }

    /// Like [`Self::duration`], for an option the kind requires.
    fn required(&self, option: &str, errors: &mut Vec<OptionError>) -> Option<i64> {
        let value = self.duration(option, errors, false);
        let given = match option {
            "size" => self.size.is_some(),
            "gap" => self.gap.is_some(),
            _ => true,
        };
        if !given {
            errors.push(
                OptionError::at("", format!("{} windows need '{option}'", self.kind))
                    .with_hint(format!("add {option} = \"10s\"")),
            );
        }
        value
    }

    /// Reports options that `self.kind` does not read.
    fn unused(&self, errors: &mut Vec<OptionError>, options: &[(&str, bool)]) {
        for (option, set) in options {
            if *set {
                errors.push(OptionError::at(
                    option,
                    format!("'{option}' does not apply to {} windows", self.kind),
                ));
            }
        }
    }

    /// The kind and its parameters; every problem goes to `errors`.
    fn plan_kind(&self, errors: &mut Vec<OptionError>) -> Option<WindowKind> {
        let aligned_only = [
            ("slide", self.slide.is_some()),
            ("offset", self.offset.is_some()),
            ("timezone", self.timezone.is_some()),
        ];
        match self.kind.as_str() {
            "tumbling" | "hopping" => {
                self.unused(
                    errors,
                    &[
                        ("gap", self.gap.is_some()),
                        ("max_length", self.max_length.is_some()),
                        ("count", self.count.is_some()),
                    ],
                );
                let size = self.required("size", errors);
                let slide = if self.kind == "hopping" {
                    if self.slide.is_none() {
                        errors.push(
                            OptionError::at("", "hopping windows need 'slide'")
                                .with_hint("add slide = \"10s\" (a new window starts this often)"),
                        );
                    }
                    self.duration("slide", errors, false)
                } else {
                    self.unused(errors, &[("slide", self.slide.is_some())]);
                    size
                };
                let offset = self.duration("offset", errors, true).unwrap_or(0);
                let zone = match &self.timezone {
                    None => None,
                    Some(name) => match name.parse::<chrono_tz::Tz>() {
                        Ok(zone) => Some(zone),
                        Err(_) => {
                            errors.push(
                                OptionError::at("timezone", format!("unknown time zone '{name}'"))
                                    .with_hint(
                                        "use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
                                    ),
                            );
                            None
                        }
                    },
                };
                let (size, slide) = (size?, slide?);
                if size % slide != 0 {
                    errors.push(
                        OptionError::at("slide", "the window 'size' must be a multiple of 'slide'")
                            .with_hint(format!("such as slide = \"{}ms\"", gcd(size, slide))),
                    );
                    return None;
                }
                if offset >= slide {
                    errors.push(OptionError::at(
                        "offset",
                        "'offset' must be shorter than the window 'slide' (or 'size')",
                    ));
                    return None;
                }
                if zone.is_some() && (size % DAY_MS != 0 || slide != size) && DAY_MS % slide != 0 {
                    errors.push(
                        OptionError::at(
                            "timezone",
                            "calendar alignment needs windows that divide a day, or whole days",
                        )
                        .with_hint("use a size such as \"15m\", \"1h\" or \"1d\""),
                    );
                    return None;
                }
                if zone.is_some() && size % DAY_MS == 0 && slide != size {
                    errors.push(OptionError::at(
                        "slide",
                        "hopping windows of whole days cannot follow a time zone",
                    ));
                    return None;
                }
                Some(WindowKind::Aligned(Alignment {
                    size_ms: size,
                    slide_ms: slide,
                    offset_ms: offset,
                    zone,
                }))
            }
            "sliding" => {
                self.unused(errors, &aligned_only);
                self.unused(
                    errors,
                    &[
                        ("gap", self.gap.is_some()),
                        ("max_length", self.max_length.is_some()),
                        ("count", self.count.is_some()),
                    ],
                );
                Some(WindowKind::Sliding {
                    size_ms: self.required("size", errors)?,
                })
            }
            "session" => {
                self.unused(errors, &aligned_only);
                self.unused(
                    errors,
                    &[
                        ("size", self.size.is_some()),
                        ("count", self.count.is_some()),
                    ],
                );
                let gap_ms = self.required("gap", errors);
                let max_length_ms = self.duration("max_length", errors, false);
                Some(WindowKind::Session {
                    gap_ms: gap_ms?,
                    max_length_ms,
                })
            }
            "count" => {
                self.unused(errors, &aligned_only);
                self.unused(
                    errors,
                    &[
                        ("size", self.size.is_some()),
                        ("gap", self.gap.is_some()),
                        ("max_length", self.max_length.is_some()),
                    ],
                );
                match self.count {
                    None => {
                        errors.push(
                            OptionError::at("", "count windows need 'count'")
                                .with_hint("add count = 100 (events per window and key)"),
                        );
                        None
                    }
                    Some(0) => {
                        errors.push(OptionError::at("count", "'count' must be at least 1"));
                        None
                    }
                    Some(events) => Some(WindowKind::Count { events }),
                }
            }
            other => {
                errors.push(
                    OptionError::at("kind", format!("unknown window kind '{other}'"))
                        .suggest(other, KINDS),
                );
                None
            }
        }
    }

    /// Checks the options against the input schema.
    ///
    /// # Errors
    /// Every problem found, each with the path of the option at fault.
    pub(crate) fn plan_window(&self, inputs: &[SchemaRef]) -> Result<WindowPlan, Vec<OptionError>> {
        let schema = single_input("window", inputs).map_err(|e| vec![e])?;
        let mut errors = Vec::new();

        let kind = self.plan_kind(&mut errors);
        let lateness = self.duration("allowed_lateness", &mut errors, true);
        let emit_every = self.duration("emit_every", &mut errors, false);
        let processing_time = match self.time.as_deref() {
            None | Some("event") => false,
            Some("processing") => true,
            Some(other) => {
                errors.push(
                    OptionError::at("time", format!("unknown time '{other}'"))
                        .suggest(other, ["event", "processing"]),
                );
                false
            }
        };
        let aligned = matches!(kind, Some(WindowKind::Aligned(_)));
        for (option, set) in [
            ("allowed_lateness", lateness.is_some_and(|l| l > 0)),
            ("emit_every", emit_every.is_some()),
            ("emit_empty", self.emit_empty),
        ] {
            if set && kind.is_some() && !aligned {
                errors.push(
                    OptionError::at(
                        option,
                        format!("'{option}' needs tumbling or hopping windows"),
                    )
                    .with_hint(format!(
                        "{} windows emit each window once, when the watermark passes it",
                        self.kind
                    )),
                );
            }
        }
        if processing_time && lateness.is_some_and(|l| l > 0) {
            errors.push(
                OptionError::at(
                    "allowed_lateness",
                    "processing-time windows have no late rows",
                )
                .with_hint("remove 'allowed_lateness', or use time = \"event\""),
            );
        }
        if let (Some(every), Some(WindowKind::Aligned(alignment))) = (emit_every, &kind)
            && every >= alignment.size_ms
        {
            errors.push(
                OptionError::at(
                    "emit_every",
                    "'emit_every' must be shorter than the window 'size'",
                )
                .with_hint("early firings happen before a window ends"),
            );
        }
        let max_keys = match self.max_keys {
            Some(0) => {
                errors.push(OptionError::at("max_keys", "'max_keys' must be at least 1"));
                0
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_KEYS,
        };

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
        if lateness.is_some_and(|l| l > 0) || emit_every.is_some() {
            taken.push((REVISION.into(), "the revision number"));
            taken.push((PROVISIONAL.into(), "the provisional flag"));
        }
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

        let (Some(event_time), Some(kind)) = (event_time.filter(|_| errors.is_empty()), kind)
        else {
            return Err(errors);
        };
        let revisions = lateness.is_some_and(|l| l > 0) || emit_every.is_some();
        let mut fields = vec![
            Field::new(WINDOW_START, timestamp_type(), false),
            Field::new(WINDOW_END, timestamp_type(), false),
        ];
        fields.extend(key_fields.iter().map(|f| f.as_ref().clone()));
        fields.extend(aggregate_fields);
        if revisions {
            fields.push(Field::new(REVISION, DataType::Int64, false));
            fields.push(Field::new(PROVISIONAL, DataType::Boolean, false));
        }
        Ok(WindowPlan {
            kind,
            allowed_lateness_ms: lateness.unwrap_or(0),
            emit_every_ms: emit_every,
            emit_empty: self.emit_empty,
            max_keys,
            processing_time,
            revisions,
            event_time,
            keys,
            key_fields,
            aggregates,
            output_schema: schema_with_event_time(fields, Some(WINDOW_START)),
        })
    }
}

/// Greatest common divisor, for the hint of a slide that does not divide the size.
fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
