//! The `i2c` source: sensors on one I2C bus polled at an interval, one row per sensor and
//! poll: `timestamp, device_id, sensor, temperature, humidity, pressure` (°C, %RH, hPa; a
//! quantity the chip does not measure is null).
//!
//! Per sensor: `device_id`, `model` (`bme280` or `sht3x`) and `address` (default the chip's
//! usual one: 0x76 for a BME280, 0x44 for an SHT3x). Several sensors share the bus; their
//! transactions never interleave.
//!
//! # Read errors
//!
//! A failed read is retried within the same poll, after `retry_backoff`, then twice that,
//! and so on, `retries` times. Every failed attempt is counted in the node's values as
//! `read_errors.<device_id>.<reason>` (reasons in
//! [`SensorError`]); a poll that gets nothing from a sensor after
//! every retry counts `polls_failed.<device_id>`, logs a warning (once, until the sensor
//! answers again) and leaves that sensor out of the poll's rows. Good reads count
//! `reads.<device_id>`. After an error the sensor is brought up again (identified, reset,
//! calibrated) on its next attempt, since it may have been power-cycled. Nothing of this
//! stops the pipeline.

use std::sync::Arc;
use std::time::Duration;

use edgeflow_engine::arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, SchemaRef};
use edgeflow_engine::config::duration;
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::{
    BoxError, BoxFuture, NodeMetrics, OptionError, Source, SourceContext, WatermarkPolicy,
    parse_options,
};
use embedded_hal::i2c::I2c;
use serde::Deserialize;

use super::now_ms;
use super::sensors::bme280::Bme280Sensor;
use super::sensors::sht3x::Sht3xSensor;
use super::sensors::{Reading, Sensor, SensorError, SensorModel, StdDelay};
use crate::SourceConfig;
use crate::error::ConnectorError;
use crate::schema_options::{default_idle_timeout, idle_timeout, watermark_policy};

pub(super) fn parse(table: toml::Table) -> Result<Box<dyn SourceConfig>, OptionError> {
    parse_options::<I2cConfig>(table).map(|c| Box::new(c) as Box<dyn SourceConfig>)
}

/// Options of the `i2c` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct I2cConfig {
    /// The bus number: 1 is `/dev/i2c-1`, on header pins 3 (SDA) and 5 (SCL). Default 1.
    #[serde(default = "default_bus")]
    pub bus: u8,
    /// Time between polls. Default `"10s"`.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// The sensors on the bus.
    pub sensors: Vec<SensorConfig>,
    /// Retries of a failed read within one poll. Default 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubles for each further retry. Default `"50ms"`.
    #[serde(default = "default_retry_backoff", deserialize_with = "duration")]
    pub retry_backoff: Duration,
    /// How far behind the newest event time the watermark trails. Default `"0s"`.
    #[serde(default, deserialize_with = "duration")]
    pub max_out_of_orderness: Duration,
    /// After this long without rows, the watermark follows the wall clock. Default `"30s"`;
    /// `"off"` never advances it.
    #[serde(default = "default_idle_timeout", deserialize_with = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
}

/// One sensor on the bus.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// The `device_id` of its rows.
    pub device_id: String,
    /// `"bme280"` or `"sht3x"`.
    pub model: SensorModel,
    /// 7-bit address (`0x76`). Default: 0x76 for a BME280, 0x44 for an SHT3x.
    #[serde(default)]
    pub address: Option<u8>,
}

const fn default_bus() -> u8 {
    1
}

const fn default_interval() -> Duration {
    Duration::from_secs(10)
}

const fn default_retries() -> u32 {
    2
}

const fn default_retry_backoff() -> Duration {
    Duration::from_millis(50)
}

/// Most retries per poll.
const MAX_RETRIES: u32 = 10;

/// A checked sensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorSettings {
    /// Rows' `device_id`.
    pub device_id: String,
    /// The chip.
    pub model: SensorModel,
    /// Its address.
    pub address: u8,
}

/// Checked options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I2cSettings {
    /// Bus number.
    pub bus: u8,
    /// Poll interval.
    pub interval: Duration,
    /// Retries per poll.
    pub retries: u32,
    /// First retry delay.
    pub retry_backoff: Duration,
    /// The sensors, in the order written.
    pub sensors: Vec<SensorSettings>,
}

impl I2cConfig {
    /// Checks every option.
    ///
    /// # Errors
    /// Every problem, each with its option path (`sensors.0.address`).
    pub fn settings(&self) -> Result<I2cSettings, Vec<OptionError>> {
        let mut errors = Vec::new();
        if self.sensors.is_empty() {
            errors.push(OptionError::at(
                "sensors",
                "no sensors to poll; list some, like sensors = [{ device_id = \"room\", model = \"bme280\" }]",
            ));
        }
        if self.interval < Duration::from_millis(100) {
            errors.push(OptionError::at(
                "interval",
                format!(
                    "interval {:?} is too short; use 100ms or more",
                    self.interval
                ),
            ));
        }
        if self.retries > MAX_RETRIES {
            errors.push(OptionError::at(
                "retries",
                format!("retries = {} is more than {MAX_RETRIES}", self.retries),
            ));
        } else {
            // The waits of one poll: backoff × (1 + 2 + … + 2^(retries-1)).
            let waits = self
                .retry_backoff
                .saturating_mul((1u32 << self.retries) - 1);
            if waits >= self.interval {
                errors.push(
                    OptionError::at(
                        "retry_backoff",
                        format!(
                            "{} retries starting at {:?} wait {waits:?} in all, longer than the interval ({:?})",
                            self.retries, self.retry_backoff, self.interval
                        ),
                    )
                    .with_hint("lower retries or retry_backoff, or poll less often"),
                );
            }
        }
        let mut sensors: Vec<SensorSettings> = Vec::with_capacity(self.sensors.len());
        for (index, sensor) in self.sensors.iter().enumerate() {
            let at = |key: &str| format!("sensors.{index}.{key}");
            let [usual, other] = sensor.model.addresses();
            let address = sensor.address.unwrap_or(usual);
            if sensor.device_id.trim().is_empty() {
                errors.push(OptionError::at(&at("device_id"), "device_id is empty"));
            } else if let Some(first) = sensors.iter().position(|s| s.device_id == sensor.device_id)
            {
                errors.push(OptionError::at(
                    &at("device_id"),
                    format!(
                        "device_id '{}' is already used by sensors.{first}",
                        sensor.device_id
                    ),
                ));
            }
            if address != usual && address != other {
                errors.push(
                    OptionError::at(
                        &at("address"),
                        format!(
                            "a {} answers at {usual:#04x} or {other:#04x}, not {address:#04x}",
                            sensor.model
                        ),
                    )
                    .with_hint("`i2cdetect -y 1` lists the addresses that answer"),
                );
            } else if let Some(first) = sensors.iter().position(|s| s.address == address) {
                errors.push(OptionError::at(
                    &at("address"),
                    format!(
                        "address {address:#04x} is already taken by sensors.{first}; two chips cannot share an address on one bus"
                    ),
                ));
            }
            sensors.push(SensorSettings {
                device_id: sensor.device_id.clone(),
                model: sensor.model,
                address,
            });
        }
        if errors.is_empty() {
            Ok(I2cSettings {
                bus: self.bus,
                interval: self.interval,
                retries: self.retries,
                retry_backoff: self.retry_backoff,
                sensors,
            })
        } else {
            Err(errors)
        }
    }
}

/// The rows of the `i2c` source.
pub fn schema() -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("timestamp", timestamp_type(), false),
            Field::new("device_id", DataType::Utf8, false),
            Field::new("sensor", DataType::Utf8, false),
            Field::new("temperature", DataType::Float64, true),
            Field::new("humidity", DataType::Float64, true),
            Field::new("pressure", DataType::Float64, true),
        ],
        Some("timestamp"),
    )
}

impl SourceConfig for I2cConfig {
    fn schema(&self) -> Result<SchemaRef, Vec<OptionError>> {
        self.settings().map(|_| schema())
    }

    fn watermark(&self) -> WatermarkPolicy {
        watermark_policy(self.max_out_of_orderness, self.idle_timeout)
    }

    fn build(&self) -> Result<Box<dyn Source>, BoxError> {
        let settings = self.settings().map_err(ConnectorError::Options)?;
        #[cfg(feature = "rpi")]
        {
            use super::bus::{RepeatedStartI2c, SharedBus};
            let raw = super::hw::RppalI2c::open(settings.bus)?;
            let bus = SharedBus::new(RepeatedStartI2c::new(raw));
            let poller = Poller::new(&settings, bus);
            Ok(Box::new(I2cSource {
                poller,
                interval: settings.interval,
            }))
        }
        #[cfg(not(feature = "rpi"))]
        {
            let _ = settings;
            Err(Box::new(super::RpiError::NotBuilt { kind: "i2c" }))
        }
    }
}

/// The driver for one sensor over `bus`.
pub fn sensor_for<B>(model: SensorModel, address: u8, bus: B) -> Box<dyn Sensor>
where
    B: I2c + Clone + Send + 'static,
    B::Error: std::fmt::Display,
{
    match model {
        SensorModel::Bme280 => Box::new(Bme280Sensor::new(bus, address, StdDelay)),
        SensorModel::Sht3x => Box::new(Sht3xSensor::<B, StdDelay>::new(bus, address)),
    }
}

/// One sensor as the poller keeps it.
pub struct PolledSensor {
    /// Rows' `device_id`.
    pub device_id: String,
    /// The chip.
    pub model: SensorModel,
    /// The driver.
    pub sensor: Box<dyn Sensor>,
    /// True while the sensor fails (to warn once, and say when it recovers).
    failing: bool,
}

impl PolledSensor {
    /// A sensor to poll.
    pub fn new(device_id: impl Into<String>, model: SensorModel, sensor: Box<dyn Sensor>) -> Self {
        Self {
            device_id: device_id.into(),
            model,
            sensor,
            failing: false,
        }
    }
}

/// One good reading of a poll.
#[derive(Clone, Debug, PartialEq)]
pub struct PolledReading {
    /// Index of the sensor in the poller.
    pub sensor: usize,
    /// Wall clock at the end of the read, ms since the epoch.
    pub at_ms: i64,
    /// The values.
    pub reading: Reading,
}

/// Reads every sensor once per poll, with retries; hardware-independent.
pub struct Poller {
    sensors: Vec<PolledSensor>,
    retries: u32,
    retry_backoff: Duration,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.sensors.iter().map(|s| s.device_id.as_str()).collect();
        f.debug_struct("Poller")
            .field("sensors", &ids)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// The sensors of `settings`, each with its driver over a handle of the shared `bus`.
    pub fn new<B>(settings: &I2cSettings, bus: B) -> Self
    where
        B: I2c + Clone + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let sensors = settings
            .sensors
            .iter()
            .map(|s| {
                PolledSensor::new(
                    s.device_id.clone(),
                    s.model,
                    sensor_for(s.model, s.address, bus.clone()),
                )
            })
            .collect();
        Self::with_sensors(sensors, settings.retries, settings.retry_backoff)
    }

    /// A poller over ready-made sensors.
    pub fn with_sensors(sensors: Vec<PolledSensor>, retries: u32, retry_backoff: Duration) -> Self {
        Self {
            sensors,
            retries,
            retry_backoff,
        }
    }

    /// Reads every sensor once, retrying failures after `sleep`ing (`std::thread::sleep` in
    /// the source; a recorder in tests). Counts into `metrics` as the module docs say.
    pub fn poll(
        &mut self,
        metrics: &NodeMetrics,
        sleep: &mut dyn FnMut(Duration),
    ) -> Vec<PolledReading> {
        let mut readings = Vec::with_capacity(self.sensors.len());
        for (index, polled) in self.sensors.iter_mut().enumerate() {
            let mut wait = self.retry_backoff;
            let mut last_error: Option<SensorError> = None;
            for attempt in 0..=self.retries {
                if attempt > 0 {
                    sleep(wait);
                    wait = wait.saturating_mul(2);
                }
                match polled.sensor.read() {
                    Ok(reading) => {
                        metrics.add_value(&format!("reads.{}", polled.device_id), 1);
                        readings.push(PolledReading {
                            sensor: index,
                            at_ms: now_ms(),
                            reading,
                        });
                        last_error = None;
                        break;
                    }
                    Err(error) => {
                        metrics.add_value(
                            &format!("read_errors.{}.{}", polled.device_id, error.reason),
                            1,
                        );
                        last_error = Some(error);
                    }
                }
            }
            match last_error {
                Some(error) => {
                    metrics.add_value(&format!("polls_failed.{}", polled.device_id), 1);
                    if !polled.failing {
                        tracing::warn!(
                            device_id = %polled.device_id,
                            model = %polled.model,
                            %error,
                            attempts = self.retries + 1,
                            "Sensor read failed after every retry; it is polled again at the next interval"
                        );
                    }
                    polled.failing = true;
                }
                None if polled.failing => {
                    tracing::info!(device_id = %polled.device_id, "Sensor answers again");
                    polled.failing = false;
                }
                None => {}
            }
        }
        readings
    }

    /// One row per reading.
    ///
    /// # Errors
    /// Only if the rows do not fit the schema, which would be a bug.
    pub fn rows(
        &self,
        readings: &[PolledReading],
    ) -> Result<RecordBatch, edgeflow_engine::arrow::error::ArrowError> {
        let rows = readings.len();
        let mut timestamp = TimestampMillisecondBuilder::with_capacity(rows);
        let mut device_id = StringBuilder::new();
        let mut sensor = StringBuilder::new();
        let mut temperature = Float64Builder::with_capacity(rows);
        let mut humidity = Float64Builder::with_capacity(rows);
        let mut pressure = Float64Builder::with_capacity(rows);
        for polled in readings {
            let source = &self.sensors[polled.sensor];
            timestamp.append_value(polled.at_ms);
            device_id.append_value(&source.device_id);
            sensor.append_value(source.model.name());
            temperature.append_option(polled.reading.temperature);
            humidity.append_option(polled.reading.humidity);
            pressure.append_option(polled.reading.pressure);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(timestamp.finish().with_timezone(UTC)),
            Arc::new(device_id.finish()),
            Arc::new(sensor.finish()),
            Arc::new(temperature.finish()),
            Arc::new(humidity.finish()),
            Arc::new(pressure.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// The running `i2c` source.
#[derive(Debug)]
pub struct I2cSource {
    poller: Poller,
    interval: Duration,
}

impl I2cSource {
    /// A source polling with `poller` every `interval` (tests build one over a mock bus).
    pub fn new(poller: Poller, interval: Duration) -> Self {
        Self { poller, interval }
    }
}

impl Source for I2cSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            let mut shutdown = ctx.shutdown();
            let mut ticker = tokio::time::interval(self.interval);
            // A slow poll (retries) shifts the schedule instead of firing a burst of polls.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut poller = self.poller;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.requested() => break,
                }
                let metrics = ctx.metrics().clone();
                // Drivers block (delays, ioctls): poll on a blocking thread.
                let (back, batch) = tokio::task::spawn_blocking(move || {
                    let readings = poller.poll(&metrics, &mut std::thread::sleep);
                    let batch = (!readings.is_empty()).then(|| poller.rows(&readings));
                    (poller, batch)
                })
                .await
                .map_err(|error| {
                    ConnectorError::Internal(format!("an I2C sensor poll panicked: {error}"))
                })?;
                poller = back;
                let batch = match batch {
                    None => continue,
                    Some(Ok(batch)) => batch,
                    Some(Err(error)) => {
                        return Err(ConnectorError::Internal(format!(
                            "sensor readings do not fit the i2c schema: {error}"
                        ))
                        .into());
                    }
                };
                if ctx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }
}
