//! The `simulator` source: plausible sensor readings from N devices, reproducible from a seed.
//!
//! Use it to try a query without hardware, to test windows and alerts against known
//! disturbances (spikes, gaps, late rows), and to benchmark with `speed = "max"`.
//!
//! ```toml
//! [sources.sensors]
//! type = "simulator"
//! schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64", humidity = "float64" }
//! devices = 10
//! rate = "10/s"              # per device
//! duration = "60s"           # or count = 6000, or neither for an endless stream
//! seed = 42
//! start = "2024-01-01T00:00:00Z"
//! speed = 1.0                # real time; 10 = ten times faster; "max" = as fast as possible
//! jitter = "500ms"
//! max_out_of_orderness = "1s"
//! ```
//!
//! Every option has a default, so `type = "simulator"` alone is a working source. How the
//! values are made is described in the `generator` module. Events are paced by the wall clock
//! with tokio timers (the task sleeps between ticks), and sent in batches of every event due,
//! at most [`MAX_BATCH_ROWS`] rows each.

mod generator;
mod values;

use std::time::Duration;

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::config::{duration, optional_duration};
use edgeflow_engine::schema::FieldType;
use edgeflow_engine::{
    BoxError, BoxFuture, OptionError, Source, SourceContext, WatermarkPolicy, parse_options,
};
use serde::Deserialize;
use tracing::warn;

use self::generator::{Generator, GeneratorSettings};
pub use self::values::{Rate, Start};
use crate::error::ConnectorError;
use crate::schema_options::{
    SchemaSpec, Speed, default_idle_timeout, idle_timeout, resolve_schema, watermark_policy,
};
use crate::{SourceConfig, SourceKind};

/// The `simulator` source kind.
pub const KIND: SourceKind = SourceKind {
    name: "simulator",
    summary: "Generates sensor readings from simulated devices (seeded, with spikes, gaps and jitter)",
    parse,
};

/// Most rows in one batch.
pub const MAX_BATCH_ROWS: usize = 4096;

fn parse(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<SimulatorConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

/// Options of the `simulator` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Fields and their types, in order. Default:
    /// `{ device_id = "string", ts = "timestamp_ms", temperature = "float64", humidity = "float64" }`.
    #[serde(default = "default_schema")]
    pub schema: SchemaSpec,
    /// The event-time field; optional when the schema has exactly one `timestamp_ms` field.
    #[serde(default)]
    pub event_time: Option<String>,
    /// How far behind the newest event time the watermark trails. Default `"0s"`.
    #[serde(default, deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// After this long without rows, the watermark follows the wall clock. Default `"30s"`;
    /// `"off"` never advances it.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
    /// Number of devices. Default 10.
    #[serde(default = "default_devices")]
    pub devices: u32,
    /// Events per device: `"10/s"`, `"5/min"`, `"2/h"`. Default `"1/s"`.
    #[serde(default)]
    pub rate: Rate,
    /// Stop after this much event time (`"60s"`). Default: no limit.
    #[serde(default, deserialize_with = "optional_duration")]
    pub duration: Option<Duration>,
    /// Stop after this many events in total (over all devices). Default: no limit. With
    /// `duration` too, whichever comes first.
    #[serde(default)]
    pub count: Option<u64>,
    /// Seed of the random values: the same seed gives the same rows. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Event time of the first tick: `"now"` or RFC 3339 (`"2024-01-01T00:00:00Z"`).
    /// Default `"now"`.
    #[serde(default)]
    pub start: Start,
    /// Replay speed against the wall clock: 1.0 (real time), a factor, or `"max"`.
    /// Default 1.0.
    #[serde(default = "real_time")]
    pub speed: Speed,
    /// The string field that gets device ids (`dev-0001`). Default `"device_id"` when the
    /// schema has that field.
    #[serde(default)]
    pub device_field: Option<String>,
    /// Period of the sine wave of every float field. Default `"10m"`.
    #[serde(default = "default_period", deserialize_with = "duration")]
    pub period: Duration,
    /// Chance that a float value jumps by +200. Default 0.001.
    #[serde(default = "default_spike_probability")]
    pub spike_probability: f64,
    /// Chance that a float value is missing (null). Default 0.01.
    #[serde(default = "default_missing_probability")]
    pub missing_probability: f64,
    /// Each event's time is its nominal time minus a random amount up to this; rows still
    /// leave in nominal order, so some arrive late. Default `"0s"`.
    #[serde(default, deserialize_with = "duration")]
    pub jitter: Duration,
}

fn default_schema() -> SchemaSpec {
    SchemaSpec::new([
        ("device_id", "string"),
        ("ts", "timestamp_ms"),
        ("temperature", "float64"),
        ("humidity", "float64"),
    ])
}

const fn default_devices() -> u32 {
    10
}

const fn real_time() -> Speed {
    Speed::REAL_TIME
}

const fn default_period() -> Duration {
    Duration::from_secs(600)
}

const fn default_spike_probability() -> f64 {
    0.001
}

const fn default_missing_probability() -> f64 {
    0.01
}

/// The default device field.
const DEVICE_FIELD: &str = "device_id";

impl SimulatorConfig {
    /// Checks every option and returns what the generator needs (with the start unresolved).
    fn settings(&self) -> Result<GeneratorSettings, Vec<OptionError>> {
        let mut errors = Vec::new();
        let resolved = resolve_schema(&self.schema, self.event_time.as_deref())
            .map_err(|schema_errors| errors.extend(schema_errors))
            .ok();
        let device_field = resolved
            .as_ref()
            .and_then(|resolved| self.device_column(&resolved.fields, &mut errors));
        if self.devices == 0 {
            errors.push(OptionError::at(
                "devices",
                "devices = 0 would generate nothing; use 1 or more",
            ));
        }
        for (path, value) in [
            ("spike_probability", self.spike_probability),
            ("missing_probability", self.missing_probability),
        ] {
            if !(0.0..=1.0).contains(&value) {
                errors.push(OptionError::at(
                    path,
                    format!("{path} = {value} is not a probability between 0 and 1"),
                ));
            }
        }
        if self.period.is_zero() {
            errors.push(OptionError::at(
                "period",
                "the sine period must be longer than 0s",
            ));
        }
        let Some(resolved) = resolved.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let rate = self.rate.per_second;
        let by_duration = self.duration.map(|d| {
            let ticks = (d.as_secs_f64() * rate).ceil();
            (ticks as u64).saturating_mul(u64::from(self.devices))
        });
        let limit = match (by_duration, self.count) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(GeneratorSettings {
            fields: resolved.fields,
            schema: resolved.schema,
            event_time: resolved.event_time,
            device_field,
            devices: self.devices,
            rate_per_second: rate,
            limit,
            seed: self.seed,
            start_ms: 0,
            period_ms: self.period.as_secs_f64() * 1_000.0,
            spike_probability: self.spike_probability,
            missing_probability: self.missing_probability,
            jitter_ms: self.jitter.as_millis().min(u128::from(u64::MAX)) as u64,
        })
    }

    /// The index of the device-id field, if the schema has it (errors when `device_field`
    /// names a missing or non-string field).
    fn device_column(
        &self,
        fields: &[(String, FieldType)],
        errors: &mut Vec<OptionError>,
    ) -> Option<usize> {
        let wanted = self.device_field.as_deref().unwrap_or(DEVICE_FIELD);
        match fields.iter().position(|(n, _)| n == wanted) {
            Some(index) if fields[index].1 == FieldType::String => Some(index),
            Some(index) => {
                errors.push(OptionError::at(
                    "device_field",
                    format!(
                        "'{wanted}' is a {} field; device ids need a string field",
                        fields[index].1
                    ),
                ));
                None
            }
            None if self.device_field.is_some() => {
                errors.push(
                    OptionError::at(
                        "device_field",
                        format!("'{wanted}' is not a field of the schema"),
                    )
                    .suggest(wanted, fields.iter().map(|(n, _)| n.as_str())),
                );
                None
            }
            None => None,
        }
    }
}

impl SourceConfig for SimulatorConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.settings().map(|s| s.schema)
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.max_out_of_orderness, self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let settings = self.settings().map_err(ConnectorError::Options)?;
        if self.jitter > self.max_out_of_orderness {
            warn!(
                jitter = ?self.jitter,
                max_out_of_orderness = ?self.max_out_of_orderness,
                "The simulator's jitter exceeds max_out_of_orderness: some rows will arrive after \
                 the watermark passed them (late)"
            );
        }
        Ok(Box::new(SimulatorSource {
            settings,
            start: self.start,
            speed: self.speed,
        }))
    }
}

/// The running simulator.
#[derive(Debug)]
pub struct SimulatorSource {
    settings: GeneratorSettings,
    start: Start,
    speed: Speed,
}

impl Source for SimulatorSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let mut settings = self.settings;
            settings.start_ms = self.start.resolve();
            run_generator(Generator::new(settings), self.speed, &ctx).await;
            Ok(())
        })
    }
}

/// Sends the generator's rows, paced by `speed`, until it is done or shutdown is requested.
async fn run_generator(mut generator: Generator, speed: Speed, ctx: &SourceContext) {
    let mut shutdown = ctx.shutdown();
    let wall_start = tokio::time::Instant::now();
    while !generator.is_done() && !ctx.is_shutdown_requested() {
        let until = match speed {
            Speed::Max => u64::MAX,
            Speed::Factor(factor) => {
                let elapsed_ms = wall_start.elapsed().as_secs_f64() * 1_000.0;
                let due = generator.events_due(elapsed_ms * factor);
                if due <= generator.next_event() {
                    // Nothing is due yet: sleep until the next tick (or shutdown).
                    let next_tick = generator.next_event() / generator.devices();
                    let wait_ms = generator.tick_offset_ms(next_tick) / factor;
                    let wait = Duration::try_from_secs_f64(wait_ms.max(0.0) / 1_000.0)
                        .unwrap_or(Duration::MAX);
                    // Absurd rates put the next tick centuries away: wake hourly to re-check.
                    let latest = tokio::time::Instant::now() + Duration::from_secs(3_600);
                    let wake = wall_start
                        .checked_add(wait)
                        .map_or(latest, |w| w.min(latest));
                    tokio::select! {
                        () = tokio::time::sleep_until(wake) => {}
                        () = shutdown.requested() => break,
                    }
                    continue;
                }
                due
            }
        };
        let Some(batch) = generator.next_batch(MAX_BATCH_ROWS, until) else {
            break;
        };
        tokio::select! {
            sent = ctx.send(batch) => if sent.is_err() { break },
            () = shutdown.requested() => break,
        }
        if speed == Speed::Max {
            // A free channel never makes `send` wait: yield so other tasks on this IO thread
            // still get their turn.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests;
