//! Parsing node options from a query file, with errors that say *where*.
//!
//! Sources, operators and sinks keep their options in serde structs (`*Config`, with
//! `#[serde(deny_unknown_fields)]`). The query planner hands each node's table to
//! [`parse_options`]; any error comes back as an [`OptionError`] whose `path` names the
//! offending key (`["drop_outside", "temperature", "1"]`), so the planner can point at its
//! `file:line:col`. Checks done after parsing (a field missing from the schema, a bad
//! duration) report the same way through [`OptionError::at`].

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A problem with one option of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError {
    /// Path from the node's table to the bad value: keys, and array indices as decimal text.
    /// Empty for the node as a whole.
    pub path: Vec<String>,
    /// What is wrong, quoting the bad input.
    pub message: String,
    /// What the user probably meant, if known (for example a field name).
    pub hint: Option<String>,
}

impl OptionError {
    /// An error at the option `path` (dotted: `"drop_outside.temperature"`).
    pub fn at(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: if path.is_empty() {
                Vec::new()
            } else {
                path.split('.').map(str::to_string).collect()
            },
            message: message.into(),
            hint: None,
        }
    }

    /// An error at a path given segment by segment (for names that contain dots).
    pub fn at_path(path: &[&str], message: impl Into<String>) -> Self {
        Self {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a "did you mean" hint when one of `candidates` is close to `wrong`.
    #[must_use]
    pub fn suggest<'a>(self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match closest_name(wrong, candidates) {
            Some(best) => self.with_hint(format!("did you mean '{best}'?")),
            None => self,
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path.join("."))?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OptionError {}

/// The candidate closest to `wrong` by edit distance, if it is close enough to be a typo.
pub fn closest_name<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wrong_lower = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&wrong_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| *distance <= (c.len().max(wrong.len()) / 3).max(1) + 1)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Deserializes a node's option table into `T`, reporting the path of the first bad value.
///
/// The table must not contain the node-level keys `type` and `inputs` (the planner removes
/// them).
///
/// # Errors
/// The first option serde rejects, with its path.
pub fn parse_options<T: DeserializeOwned>(table: toml::Table) -> Result<T, OptionError> {
    let value = toml::Value::Table(table);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = error.into_inner().to_string();
        let message = message.trim().trim_end_matches('.').replace('\n', " ");
        OptionError {
            path,
            message,
            hint: None,
        }
    })
}

/// Serde helper: a duration written as text (`"10s"`, `"500ms"`).
///
/// Use with `#[serde(deserialize_with = "edgeflow_engine::config::duration")]`.
///
/// # Errors
/// The text is not a duration; the message quotes it.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::time::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Serde helper: an optional duration written as text.
///
/// # Errors
/// The text is not a duration; the message quotes it.
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|t| crate::time::parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        devices: u32,
        #[serde(default)]
        ranges: std::collections::BTreeMap<String, [f64; 2]>,
        #[serde(deserialize_with = "duration")]
        every: Duration,
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn good_options_parse() {
        let parsed: Sample = parse_options(table("devices = 3\nevery = \"2s\"")).unwrap();
        assert_eq!(parsed.devices, 3);
        assert_eq!(parsed.every, Duration::from_secs(2));
    }

    #[test]
    fn errors_carry_the_path_of_the_bad_value() {
        let error = parse_options::<Sample>(table(
            "devices = 3\nevery = \"2s\"\nranges = { t = [1.0, \"x\"] }",
        ))
        .unwrap_err();
        assert_eq!(error.path, ["ranges", "t", "1"]);

        let error = parse_options::<Sample>(table("devices = 3\nevery = \"soon\"")).unwrap_err();
        assert_eq!(error.path, ["every"]);
        assert!(error.message.contains("'soon'"), "{}", error.message);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let error = parse_options::<Sample>(table("devcies = 3\nevery = \"1s\"")).unwrap_err();
        assert!(error.message.contains("devcies"), "{}", error.message);
    }

    #[test]
    fn closest_name_finds_typos_only() {
        let names = ["temperature", "humidity", "device_id"];
        assert_eq!(closest_name("temprature", names), Some("temperature"));
        assert_eq!(closest_name("Humidity", names), Some("humidity"));
        assert_eq!(closest_name("pressure", names), None);
    }
}
