//! Options shared by every source: the schema, the event-time column, the watermark and the
//! replay speed.
//!
//! A source config declares these fields itself (serde's `flatten` does not mix with
//! `deny_unknown_fields`) and hands them to the helpers here:
//!
//! ```toml
//! schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }
//! event_time = "ts"              # optional when the schema has exactly one timestamp_ms field
//! max_out_of_orderness = "2s"    # default "0s"
//! idle_timeout = "30s"           # default "30s"; "off" never advances an idle source
//! ```
//!
//! * [`SchemaSpec`] keeps the fields in the order written; [`resolve_schema`] checks the type
//!   names and the event-time column and builds the Arrow schema (every field nullable,
//!   timestamps as `Timestamp(Millisecond, "UTC")`).
//! * [`watermark_policy`] turns the two watermark options into a [`WatermarkPolicy`].
//! * [`Speed`] is `speed = 1.0` (real time), a factor `k`, or `"max"`.

use std::fmt;
use std::time::Duration;

use edgeflow_engine::OptionError;
use edgeflow_engine::WatermarkPolicy;
use edgeflow_engine::arrow::datatypes::{Field, SchemaRef};
use edgeflow_engine::schema::{FieldType, schema_with_event_time};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `schema = { name = "type", … }` as written, in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaSpec(pub Vec<(String, String)>);

impl SchemaSpec {
    /// A spec from `(name, type)` pairs.
    pub fn new<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            fields
                .into_iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        )
    }

    /// True when no field is declared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for SchemaSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = SchemaSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table of field names and types, like { ts = \"timestamp_ms\", t = \"float64\" }",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SchemaSpec, A::Error> {
                let mut fields = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let type_name = map.next_value::<String>()?;
                    fields.push((name, type_name));
                }
                Ok(SchemaSpec(fields))
            }
        }

        deserializer.deserialize_map(SpecVisitor)
    }
}

/// A checked schema: field types, the event-time column and the Arrow schema.
#[derive(Clone, Debug)]
pub struct SourceSchema {
    /// Fields in order, with their types.
    pub fields: Vec<(String, FieldType)>,
    /// Index of the event-time field.
    pub event_time: usize,
    /// The Arrow schema, naming the event-time column in its metadata.
    pub schema: SchemaRef,
}

/// Checks `spec` and the event-time option and builds the Arrow schema.
///
/// `event_time` may be `None` when the schema has exactly one `timestamp_ms` field.
///
/// # Errors
/// Every problem, each at its option path (`schema.temperature`, `event_time`).
pub fn resolve_schema(
    spec: &SchemaSpec,
    event_time: Option<&str>,
) -> Result<SourceSchema, Vec<OptionError>> {
    let mut errors = Vec::new();
    if spec.is_empty() {
        errors.push(OptionError::at(
            "schema",
            "the schema has no fields; declare some, like schema = { ts = \"timestamp_ms\", value = \"float64\" }",
        ));
        return Err(errors);
    }
    let type_names: Vec<&str> = FieldType::ALL.iter().map(|(name, _)| *name).collect();
    let mut fields = Vec::with_capacity(spec.0.len());
    for (name, type_name) in &spec.0 {
        match FieldType::parse(type_name) {
            Some(field_type) => fields.push((name.clone(), field_type)),
            None => errors.push(
                OptionError::at(
                    &format!("schema.{name}"),
                    format!(
                        "unknown type '{type_name}' for field '{name}'; types are {}",
                        type_names.join(", ")
                    ),
                )
                .suggest(type_name, type_names.iter().copied()),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let event_time = match find_event_time(&fields, event_time) {
        Ok(index) => index,
        Err(error) => return Err(vec![error]),
    };
    let arrow_fields = fields
        .iter()
        .map(|(name, field_type)| Field::new(name, field_type.data_type(), true));
    let schema = schema_with_event_time(arrow_fields, Some(&fields[event_time].0));
    Ok(SourceSchema {
        fields,
        event_time,
        schema,
    })
}

/// The index of the event-time field: the one named, or the only timestamp field.
fn find_event_time(
    fields: &[(String, FieldType)],
    event_time: Option<&str>,
) -> Result<usize, OptionError> {
    let names = || fields.iter().map(|(n, _)| n.as_str());
    let timestamps: Vec<&str> = fields
        .iter()
        .filter(|(_, t)| *t == FieldType::TimestampMs)
        .map(|(n, _)| n.as_str())
        .collect();
    match event_time {
        Some(wanted) => {
            let Some(index) = fields.iter().position(|(n, _)| n == wanted) else {
                return Err(OptionError::at(
                    "event_time",
                    format!("'{wanted}' is not a field of the schema"),
                )
                .suggest(wanted, names()));
            };
            let field_type = fields[index].1;
            if field_type != FieldType::TimestampMs {
                return Err(OptionError::at(
                    "event_time",
                    format!(
                        "'{wanted}' is a {field_type} field; the event-time field must be timestamp_ms"
                    ),
                )
                .suggest(wanted, timestamps.iter().copied()));
            }
            Ok(index)
        }
        None => match timestamps.as_slice() {
            [only] => Ok(fields
                .iter()
                .position(|(n, _)| n == only)
                .expect("the name came from the fields")),
            [] => Err(OptionError::at(
                "schema",
                "the schema has no timestamp_ms field to use as event time; add one, like ts = \"timestamp_ms\"",
            )),
            several => Err(OptionError::at(
                "event_time",
                format!(
                    "the schema has several timestamp_ms fields ({}); name the event-time one, like event_time = \"{}\"",
                    several
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    several[0]
                ),
            )),
        },
    }
}

/// The default `idle_timeout`: 30 seconds.
pub const fn default_idle_timeout() -> Option<Duration> {
    Some(Duration::from_secs(30))
}

/// Serde helper for `idle_timeout`: a duration, or `"off"` (also `"never"`, `"none"`) for
/// `None`. Zero is rejected: it would move the watermark with the wall clock between any
/// two rows.
///
/// # Errors
/// The text is neither a positive duration nor `"off"`; the message quotes it.
pub fn idle_timeout<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "off" | "never" | "none"
    ) {
        return Ok(None);
    }
    let duration = edgeflow_engine::time::parse_duration(&text).map_err(de::Error::custom)?;
    if duration.is_zero() {
        return Err(de::Error::custom(format!(
            "invalid idle_timeout '{text}': must be longer than 0s; use \"off\" to never advance an idle source's watermark"
        )));
    }
    Ok(Some(duration))
}

/// The watermark policy of a source from its two options.
pub fn watermark_policy(
    max_out_of_orderness: Duration,
    idle_timeout: Option<Duration>,
) -> WatermarkPolicy {
    WatermarkPolicy {
        max_out_of_orderness,
        idle_timeout,
    }
}

/// How fast a source replays event time against the wall clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline takes rows.
    Max,
    /// `k` event-time seconds per wall-clock second (1.0 is real time).
    Factor(f64),
}

impl Speed {
    /// Real time.
    pub const REAL_TIME: Self = Self::Factor(1.0);

    fn from_number(value: f64) -> Result<Self, String> {
        if value.is_finite() && value > 0.0 {
            Ok(Self::Factor(value))
        } else {
            Err(format!(
                "invalid speed '{value}': must be a positive number (1.0 = real time, 10 = ten times faster) or \"max\""
            ))
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Max => f.write_str("max"),
            Self::Factor(k) => write!(f, "{k}"),
        }
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpeedVisitor;

        impl Visitor<'_> for SpeedVisitor {
            type Value = Speed;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive number (1.0 = real time) or \"max\"")
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Speed, E> {
                Speed::from_number(value).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Speed, E> {
                Speed::from_number(value as f64).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Speed, E> {
                Speed::from_number(value as f64).map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Speed, E> {
                let trimmed = text.trim();
                if trimmed.eq_ignore_ascii_case("max") {
                    return Ok(Speed::Max);
                }
                match trimmed.trim_end_matches(['x', 'X']).parse::<f64>() {
                    Ok(value) => Speed::from_number(value).map_err(E::custom),
                    Err(_) => Err(E::custom(format!(
                        "invalid speed '{text}': expected a positive number (1.0 = real time) or \"max\""
                    ))),
                }
            }
        }

        deserializer.deserialize_any(SpeedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::parse_options;
    use edgeflow_engine::schema::{event_time_column, timestamp_type};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        schema: SchemaSpec,
        #[serde(default)]
        event_time: Option<String>,
        #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
        idle_timeout: Option<Duration>,
        #[serde(default = "max_speed")]
        speed: Speed,
    }

    fn max_speed() -> Speed {
        Speed::Max
    }

    fn parse(text: &str) -> Result<Options, OptionError> {
        parse_options(text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn schema_keeps_field_order_and_marks_event_time() {
        let options =
            parse(r#"schema = { z = "string", ts = "timestamp_ms", a = "double", n = "int" }"#)
                .unwrap();
        let resolved = resolve_schema(&options.schema, options.event_time.as_deref()).unwrap();
        let names: Vec<&str> = resolved
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["z", "ts", "a", "n"]);
        assert_eq!(resolved.event_time, 1);
        assert_eq!(event_time_column(&resolved.schema), Some((1, "ts")));
        assert_eq!(resolved.schema.field(1).data_type(), &timestamp_type());
        assert_eq!(options.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(options.speed, Speed::Max);
    }

    #[test]
    fn unknown_types_are_reported_at_the_field_with_a_suggestion() {
        let options = parse(r#"schema = { ts = "timestamp_ms", t = "flaot64" }"#).unwrap();
        let errors = resolve_schema(&options.schema, None).unwrap_err();
        assert_eq!(errors[0].path, ["schema", "t"]);
        assert!(errors[0].message.contains("'flaot64'"), "{}", errors[0]);
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean 'float64'?"));
    }

    #[test]
    fn non_string_types_fail_at_parse_time_with_the_path() {
        let error = parse(r#"schema = { ts = "timestamp_ms", t = 3 }"#).unwrap_err();
        assert_eq!(error.path, ["schema", "t"]);
    }

    #[test]
    fn event_time_must_name_a_timestamp_field() {
        let spec = SchemaSpec::new([("ts", "timestamp_ms"), ("id", "string")]);
        let errors = resolve_schema(&spec, Some("tss")).unwrap_err();
        assert_eq!(errors[0].path, ["event_time"]);
        assert!(errors[0].message.contains("'tss'"));
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean 'ts'?"));

        let errors = resolve_schema(&spec, Some("id")).unwrap_err();
        assert!(errors[0].message.contains("string field"), "{}", errors[0]);

        let none = SchemaSpec::new([("id", "string")]);
        assert_eq!(resolve_schema(&none, None).unwrap_err()[0].path, ["schema"]);

        let two = SchemaSpec::new([("a", "timestamp"), ("b", "timestamp_ms")]);
        let errors = resolve_schema(&two, None).unwrap_err();
        assert_eq!(errors[0].path, ["event_time"]);
        assert_eq!(resolve_schema(&two, Some("b")).unwrap().event_time, 1);
        assert!(resolve_schema(&SchemaSpec::default(), None).is_err());
    }

    #[test]
    fn idle_timeout_accepts_off_and_rejects_zero() {
        let options = parse("schema = { ts = \"timestamp\" }\nidle_timeout = \"off\"").unwrap();
        assert_eq!(options.idle_timeout, None);
        let options = parse("schema = { ts = \"timestamp\" }\nidle_timeout = \"5s\"").unwrap();
        assert_eq!(options.idle_timeout, Some(Duration::from_secs(5)));
        let error = parse("schema = { ts = \"timestamp\" }\nidle_timeout = \"0s\"").unwrap_err();
        assert_eq!(error.path, ["idle_timeout"]);
        let error = parse("schema = { ts = \"timestamp\" }\nidle_timeout = \"soon\"").unwrap_err();
        assert!(error.message.contains("'soon'"), "{}", error.message);
        let policy = watermark_policy(Duration::from_secs(2), None);
        assert_eq!(policy.max_out_of_orderness, Duration::from_secs(2));
    }

    #[test]
    fn speed_is_a_positive_number_or_max() {
        let speed = |value: &str| {
            parse(&format!(
                "schema = {{ ts = \"timestamp\" }}\nspeed = {value}"
            ))
        };
        assert_eq!(speed("1.0").unwrap().speed, Speed::Factor(1.0));
        assert_eq!(speed("10").unwrap().speed, Speed::Factor(10.0));
        assert_eq!(speed("\"max\"").unwrap().speed, Speed::Max);
        assert_eq!(speed("\"MAX\"").unwrap().speed, Speed::Max);
        assert_eq!(speed("\"2.5x\"").unwrap().speed, Speed::Factor(2.5));
        for bad in ["0", "-1", "\"fast\"", "nan"] {
            let error = speed(bad).unwrap_err();
            assert_eq!(error.path, ["speed"], "{bad}");
        }
        assert!(speed("\"fast\"").unwrap_err().message.contains("'fast'"));
        assert_eq!(Speed::Max.to_string(), "max");
    }
}
