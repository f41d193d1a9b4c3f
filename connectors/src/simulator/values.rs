//! Option values of the simulator that have their own syntax: `rate` and `start`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// Events per device per second, written `"10/s"`, `"5/min"`, `"2/h"` (or a bare number,
/// read as per second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Events per second (positive, finite).
    pub per_second: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Self { per_second: 1.0 }
    }
}

impl Rate {
    /// Parses `"10/s"`, `"5/min"`, `"2/h"`, `"0.5/sec"`, `"100 / m"`.
    ///
    /// # Errors
    /// A message quoting the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid rate '{text}': expected events per device like \"10/s\", \"5/min\" or \"2/h\""
            )
        };
        let (count, unit) = match text.split_once('/') {
            Some((count, unit)) => (count.trim(), unit.trim()),
            None => (text.trim(), "s"),
        };
        let count: f64 = count.parse().map_err(|_| bad())?;
        let seconds = match unit.to_ascii_lowercase().as_str() {
            "ms" => 0.001,
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hr" | "hour" => 3_600.0,
            "d" | "day" => 86_400.0,
            _ => return Err(bad()),
        };
        Self::from_per_second(count / seconds, text)
    }

    fn from_per_second(per_second: f64, text: &str) -> Result<Self, String> {
        if per_second.is_finite() && per_second > 0.0 {
            Ok(Self { per_second })
        } else {
            Err(format!(
                "invalid rate '{text}': must be more than zero events"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;

        impl Visitor<'_> for RateVisitor {
            type Value = Rate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"10/s\", \"5/min\" or \"2/h\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Rate, E> {
                Rate::parse(text).map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Rate, E> {
                Rate::from_per_second(value, &value.to_string()).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Rate, E> {
                Rate::from_per_second(value as f64, &value.to_string()).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Rate, E> {
                Rate::from_per_second(value as f64, &value.to_string()).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(RateVisitor)
    }
}

/// Where simulated event time begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// The wall clock when the source starts.
    #[default]
    Now,
    /// A fixed instant, in ms since the epoch.
    At(i64),
}

impl Start {
    /// Parses `"now"` or an RFC 3339 instant such as `"2024-01-01T00:00:00Z"`.
    ///
    /// # Errors
    /// A message quoting the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("now") {
            return Ok(Self::Now);
        }
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|moment| Self::At(moment.timestamp_millis()))
            .map_err(|error| {
                format!(
                    "invalid start '{text}': {error}; expected \"now\" or an RFC 3339 time like \"2024-01-01T00:00:00Z\""
                )
            })
    }

    /// The start in ms since the epoch, reading the clock for [`Start::Now`].
    pub fn resolve(self) -> i64 {
        match self {
            Self::Now => chrono::Utc::now().timestamp_millis(),
            Self::At(ms) => ms,
        }
    }
}

impl<'de> Deserialize<'de> for Start {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_every_unit() {
        assert_eq!(Rate::parse("10/s").unwrap().per_second, 10.0);
        assert_eq!(Rate::parse("5/min").unwrap().per_second, 5.0 / 60.0);
        assert_eq!(Rate::parse("2/h").unwrap().per_second, 2.0 / 3600.0);
        assert_eq!(Rate::parse(" 0.5 / sec ").unwrap().per_second, 0.5);
        assert_eq!(Rate::parse("7").unwrap().per_second, 7.0);
        for bad in ["ten/s", "10/fortnight", "0/s", "-1/s", ""] {
            let error = Rate::parse(bad).unwrap_err();
            assert!(error.contains(&format!("'{bad}'")), "{error}");
        }
    }

    #[test]
    fn start_is_now_or_rfc3339() {
        assert_eq!(Start::parse("now").unwrap(), Start::Now);
        assert_eq!(
            Start::parse("2024-01-01T00:00:00Z").unwrap(),
            Start::At(1_704_067_200_000)
        );
        assert_eq!(
            Start::parse("2024-01-01T01:00:00+01:00").unwrap(),
            Start::At(1_704_067_200_000)
        );
        assert!(
            Start::parse("yesterday")
                .unwrap_err()
                .contains("'yesterday'")
        );
        assert!(Start::Now.resolve() > 1_700_000_000_000);
    }
}
