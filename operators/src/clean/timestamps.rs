//! Timestamp normalisation (`timestamps`): text or numbers in several formats become one
//! `timestamp_ms` (UTC) column.
//!
//! Formats are tried in the order given; the first that parses wins:
//!
//! * `rfc3339`: `2023-01-01T10:00:00.5+01:00`, `…Z` (the offset in the text is used);
//! * `iso8601`: `2023-01-01T10:00:00[.fff]`, with a space instead of `T`, without seconds, or
//!   a date alone, read in the configured `timezone`;
//! * `epoch`: a number of seconds, milliseconds, microseconds or nanoseconds since 1970,
//!   told apart by magnitude (below 1e11 seconds, 1e14 ms, 1e17 µs, else ns: each range
//!   covers the years 1973 to 5138); `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns` declare it;
//! * anything containing `%`: a [chrono format string](https://docs.rs/chrono/latest/chrono/format/strftime/)
//!   such as `%Y/%m/%d %H:%M` or `%d-%b-%Y %H:%M:%S`, read in `timezone` unless it has `%z`.
//!
//! Numeric columns (int or float) are read as epoch numbers. A local time that does not exist
//! (skipped by a daylight-saving change) does not parse; an ambiguous one takes the earlier
//! instant.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use edgeflow_engine::arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
use edgeflow_engine::arrow::compute::cast;
use edgeflow_engine::arrow::datatypes::{DataType, Float64Type};
use edgeflow_engine::arrow::error::ArrowError;
use edgeflow_engine::schema::UTC;

/// The formats tried when none are given.
pub(crate) const DEFAULT_FORMATS: [&str; 6] = [
    "rfc3339",
    "iso8601",
    "epoch",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d-%b-%Y %H:%M:%S",
];

/// The unit of an epoch number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpochUnit {
    /// Decided per value by its magnitude.
    Auto,
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    /// Milliseconds for `value` in this unit (`None` when out of range or not finite).
    pub(crate) fn to_millis(self, value: f64) -> Option<i64> {
        if !value.is_finite() {
            return None;
        }
        let unit = match self {
            EpochUnit::Auto => match value.abs() {
                v if v < 1e11 => EpochUnit::Seconds,
                v if v < 1e14 => EpochUnit::Millis,
                v if v < 1e17 => EpochUnit::Micros,
                _ => EpochUnit::Nanos,
            },
            unit => unit,
        };
        let millis = match unit {
            EpochUnit::Seconds => value * 1e3,
            EpochUnit::Millis | EpochUnit::Auto => value,
            EpochUnit::Micros => value / 1e3,
            EpochUnit::Nanos => value / 1e6,
        };
        // Floor, so that a time before 1970 with a fraction of a millisecond rounds down as
        // the integer formats do.
        let millis = millis.floor();
        (millis.abs() < 9.0e15).then_some(millis as i64)
    }

    /// The unit of an integer: exact for nanoseconds, where `f64` would round.
    fn int_to_millis(self, value: i64) -> Option<i64> {
        match self {
            EpochUnit::Nanos => Some(value.div_euclid(1_000_000)),
            EpochUnit::Micros => Some(value.div_euclid(1_000)),
            EpochUnit::Millis => Some(value),
            EpochUnit::Seconds => value.checked_mul(1_000),
            EpochUnit::Auto => match value.unsigned_abs() {
                v if v < 100_000_000_000 => EpochUnit::Seconds.int_to_millis(value),
                v if v < 100_000_000_000_000 => Some(value),
                v if v < 100_000_000_000_000_000 => EpochUnit::Micros.int_to_millis(value),
                _ => EpochUnit::Nanos.int_to_millis(value),
            },
        }
    }
}

/// One input format.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TimeFormat {
    Rfc3339,
    Iso8601,
    Epoch(EpochUnit),
    /// A chrono format string; `zoned` when it reads an offset (`%z`, `%:z`, `%#z`).
    Custom {
        format: String,
        zoned: bool,
    },
}

impl TimeFormat {
    /// Reads a format name from a query file.
    ///
    /// # Errors
    /// A message quoting a name that is neither known nor a format string.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "rfc3339" => TimeFormat::Rfc3339,
            "iso8601" => TimeFormat::Iso8601,
            "epoch" => TimeFormat::Epoch(EpochUnit::Auto),
            "epoch_s" => TimeFormat::Epoch(EpochUnit::Seconds),
            "epoch_ms" => TimeFormat::Epoch(EpochUnit::Millis),
            "epoch_us" => TimeFormat::Epoch(EpochUnit::Micros),
            "epoch_ns" => TimeFormat::Epoch(EpochUnit::Nanos),
            custom if custom.contains('%') => {
                // chrono reports a bad specifier only when it formats or parses; formatting
                // a fixed instant finds it at plan time.
                let probe = chrono::DateTime::from_timestamp(0, 0).unwrap_or_default();
                let mut text = String::new();
                if std::fmt::write(&mut text, format_args!("{}", probe.format(custom))).is_err() {
                    return Err(format!("invalid time format string '{custom}'"));
                }
                TimeFormat::Custom {
                    format: custom.to_string(),
                    zoned: custom.contains("%z")
                        || custom.contains("%:z")
                        || custom.contains("%#z"),
                }
            }
            other => {
                return Err(format!(
                    "unknown time format '{other}': use rfc3339, iso8601, epoch, epoch_s, \
                     epoch_ms, epoch_us, epoch_ns or a format string such as '%Y/%m/%d %H:%M'"
                ));
            }
        })
    }
}

/// The planned normalisation of one column.
#[derive(Clone, Debug)]
pub(crate) struct TimestampParser {
    pub(crate) formats: Vec<TimeFormat>,
    pub(crate) timezone: Tz,
}

const ISO_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

impl TimestampParser {
    /// Milliseconds since the epoch for `text`, by the first format that reads it.
    pub(crate) fn parse_text(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        self.formats.iter().find_map(|format| match format {
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis()),
            TimeFormat::Iso8601 => ISO_FORMATS
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(text, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .and_then(|naive| self.local(naive)),
            TimeFormat::Epoch(unit) => match text.parse::<i64>() {
                Ok(int) => unit.int_to_millis(int),
                Err(_) => text.parse::<f64>().ok().and_then(|v| unit.to_millis(v)),
            },
            TimeFormat::Custom {
                format,
                zoned: true,
            } => DateTime::parse_from_str(text, format)
                .ok()
                .map(|t| t.timestamp_millis()),
            TimeFormat::Custom {
                format,
                zoned: false,
            } => NaiveDateTime::parse_from_str(text, format)
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(text, format)
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .and_then(|naive| self.local(naive)),
        })
    }

    /// A local time in the configured zone as epoch milliseconds.
    fn local(&self, naive: NaiveDateTime) -> Option<i64> {
        self.timezone
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.timestamp_millis())
    }

    /// The epoch unit for numeric columns: the first epoch format listed, else `Auto`.
    fn numeric_unit(&self) -> EpochUnit {
        self.formats
            .iter()
            .find_map(|f| match f {
                TimeFormat::Epoch(unit) => Some(*unit),
                _ => None,
            })
            .unwrap_or(EpochUnit::Auto)
    }

    /// Parses a whole column. Returns the `timestamp_ms` column (null where the input is null
    /// or does not parse) and the rows whose non-null value did not parse.
    ///
    /// # Errors
    /// Only if a cast fails, which means the column does not have a planned type.
    pub(crate) fn parse_column(
        &self,
        column: &ArrayRef,
    ) -> Result<(ArrayRef, Vec<usize>), ArrowError> {
        let mut failed = Vec::new();
        let mut out: Vec<Option<i64>> = Vec::with_capacity(column.len());
        match column.data_type() {
            DataType::Timestamp(..) => {
                let ms = cast(column, &edgeflow_engine::schema::timestamp_type())?;
                return Ok((ms, failed));
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = cast(column, &DataType::Utf8)?;
                for (row, value) in text.as_string::<i32>().iter().enumerate() {
                    out.push(value.and_then(|v| {
                        let parsed = self.parse_text(v);
                        if parsed.is_none() {
                            failed.push(row);
                        }
                        parsed
                    }));
                }
            }
            DataType::Float32 | DataType::Float64 => {
                let unit = self.numeric_unit();
                let values = cast(column, &DataType::Float64)?;
                for (row, value) in values.as_primitive::<Float64Type>().iter().enumerate() {
                    out.push(value.and_then(|v| {
                        let parsed = unit.to_millis(v);
                        if parsed.is_none() {
                            failed.push(row);
                        }
                        parsed
                    }));
                }
            }
            _ => {
                let unit = self.numeric_unit();
                let values = cast(column, &DataType::Int64)?;
                for (row, value) in values
                    .as_primitive::<edgeflow_engine::arrow::datatypes::Int64Type>()
                    .iter()
                    .enumerate()
                {
                    out.push(value.and_then(|v| {
                        let parsed = unit.int_to_millis(v);
                        if parsed.is_none() {
                            failed.push(row);
                        }
                        parsed
                    }));
                }
            }
        }
        let array = TimestampMillisecondArray::from(out).with_timezone(UTC);
        Ok((std::sync::Arc::new(array), failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use proptest::prelude::*;

    fn parser(formats: &[&str], zone: &str) -> TimestampParser {
        TimestampParser {
            formats: formats
                .iter()
                .map(|f| TimeFormat::parse(f).unwrap())
                .collect(),
            timezone: zone.parse().unwrap(),
        }
    }

    fn default_parser() -> TimestampParser {
        parser(&DEFAULT_FORMATS, "UTC")
    }

    const T: i64 = 1_672_567_200_000; // 2023-01-01T10:00:00Z

    #[test]
    fn the_formats_of_the_issue_parse() {
        let p = default_parser();
        assert_eq!(p.parse_text("2023-01-01T10:00:00Z"), Some(T));
        assert_eq!(p.parse_text("2023-01-01T11:00:00+01:00"), Some(T));
        assert_eq!(p.parse_text("2023-01-01T10:00:00.250Z"), Some(T + 250));
        assert_eq!(p.parse_text("2023-01-01 10:00:00"), Some(T));
        assert_eq!(p.parse_text("2023-01-01T10:00"), Some(T));
        assert_eq!(p.parse_text("1672567200"), Some(T));
        assert_eq!(p.parse_text("1672567200000"), Some(T));
        assert_eq!(p.parse_text("1672567200000000"), Some(T));
        assert_eq!(p.parse_text("1672567200000000000"), Some(T));
        assert_eq!(p.parse_text("1672567200.5"), Some(T + 500));
        assert_eq!(p.parse_text("2023/1/1 10:00"), Some(T));
        assert_eq!(p.parse_text(" 01-Jan-2023 10:00:00 "), Some(T));
        assert_eq!(p.parse_text("yesterday"), None);
        assert_eq!(p.parse_text(""), None);
    }

    #[test]
    fn zone_applies_to_local_times_only() {
        let p = parser(&["rfc3339", "iso8601"], "Europe/Berlin");
        assert_eq!(p.parse_text("2023-01-01 11:00:00"), Some(T));
        assert_eq!(p.parse_text("2023-01-01T10:00:00Z"), Some(T));
        // 02:30 on 2023-03-26 does not exist in Berlin (clocks jump from 02:00 to 03:00).
        assert_eq!(p.parse_text("2023-03-26 02:30:00"), None);
    }

    #[test]
    fn declared_epoch_units_and_order_of_formats() {
        assert_eq!(parser(&["epoch_ms"], "UTC").parse_text("1000"), Some(1_000));
        assert_eq!(
            parser(&["epoch"], "UTC").parse_text("1000"),
            Some(1_000_000)
        );
        assert_eq!(parser(&["epoch_ns"], "UTC").parse_text("-1"), Some(-1));
        let p = parser(&["%d/%m/%Y %H:%M"], "UTC");
        assert_eq!(p.parse_text("01/01/2023 10:00"), Some(T));
        let p = parser(&["%Y-%m-%d %H:%M %z"], "Asia/Tokyo");
        assert_eq!(p.parse_text("2023-01-01 11:00 +0100"), Some(T));
    }

    #[test]
    fn bad_format_names_are_rejected() {
        assert!(
            TimeFormat::parse("rfc822")
                .unwrap_err()
                .contains("'rfc822'")
        );
        assert!(TimeFormat::parse("%Q").unwrap_err().contains("'%Q'"));
    }

    #[test]
    fn columns_of_every_type_parse_and_failures_are_listed() {
        use edgeflow_engine::arrow::array::{Float64Array, Int64Array, StringArray};
        use std::sync::Arc;
        let p = default_parser();
        let text: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2023-01-01T10:00:00Z"),
            None,
            Some("garbage"),
        ]));
        let (out, failed) = p.parse_column(&text).unwrap();
        assert_eq!(failed, [2]);
        assert_eq!(out.null_count(), 2);
        assert_eq!(out.data_type(), &edgeflow_engine::schema::timestamp_type());
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1_672_567_200, T]));
        let (out, failed) = p.parse_column(&ints).unwrap();
        assert!(failed.is_empty());
        let out = out.as_primitive::<edgeflow_engine::arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(out.values().to_vec(), [T, T]);
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN, 1.5e9]));
        let (_, failed) = p.parse_column(&floats).unwrap();
        assert_eq!(failed, [0]);
    }

    proptest! {
        /// Any instant between 1973 and 2200 survives a trip through every format: formatted,
        /// then parsed by the default list (precision lost by a format is truncated away).
        #[test]
        fn every_format_round_trips(ms in 100_000_000_000i64..7_258_118_400_000) {
            let p = default_parser();
            let berlin = parser(&DEFAULT_FORMATS, "Europe/Berlin");
            let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            let secs = ms.div_euclid(1_000) * 1_000;
            let mins = ms.div_euclid(60_000) * 60_000;
            let cases: Vec<(String, i64)> = vec![
                (t.to_rfc3339(), ms),
                (t.with_timezone(&chrono_tz::Asia::Kolkata).to_rfc3339(), ms),
                (t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(), ms),
                (t.format("%Y-%m-%d %H:%M:%S").to_string(), secs),
                ((ms / 1_000).to_string(), secs),
                (ms.to_string(), ms),
                ((ms as i128 * 1_000).to_string(), ms),
                ((ms as i128 * 1_000_000).to_string(), ms),
                (t.format("%Y/%-m/%-d %H:%M").to_string(), mins),
                (t.format("%Y/%m/%d %H:%M:%S").to_string(), secs),
                (t.format("%d-%b-%Y %H:%M:%S").to_string(), secs),
            ];
            for (text, expected) in cases {
                prop_assert_eq!(p.parse_text(&text), Some(expected), "{}", text);
            }
            // A local Berlin time reads back as the same instant, unless it falls in the
            // hour repeated when clocks go back (the earlier instant is chosen then).
            let local = t.with_timezone(&chrono_tz::Europe::Berlin);
            let text = local.format("%Y-%m-%d %H:%M:%S").to_string();
            let got = berlin.parse_text(&text).unwrap();
            prop_assert!(got == secs || got == secs - 3_600_000, "{} {}", text, got);
        }
    }
}
