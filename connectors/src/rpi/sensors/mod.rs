//! I2C sensors behind one small trait, [`Sensor`], so the poller (retries, backoff, metrics)
//! does not care which chip it reads.
//!
//! Each implementation owns its driver crate's device over any `embedded_hal::i2c::I2c` bus
//! (rppal through [`RepeatedStartI2c`](super::bus::RepeatedStartI2c) on a Pi,
//! `embedded-hal-mock` in tests) and any `embedded_hal::delay::DelayNs`.
//!
//! * [`bme280`]: Bosch BME280 (temperature, pressure, humidity) with the `bme280` 0.5 crate.
//! * [`sht3x`]: Sensirion SHT30/31/35 (temperature, humidity) with `embedded-sht3x` 0.2.

pub mod bme280;
pub mod sht3x;

use std::fmt;

use embedded_hal::i2c::ErrorKind;
use serde::Deserialize;

/// A sensor model, as written in `sensors = [{ model = "bme280", … }]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorModel {
    /// Bosch BME280: temperature, pressure, humidity.
    Bme280,
    /// Sensirion SHT3x: temperature, humidity.
    Sht3x,
}

impl SensorModel {
    /// The name in query files and in the `sensor` column.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bme280 => "bme280",
            Self::Sht3x => "sht3x",
        }
    }

    /// The addresses the chip can answer at (selected by its address pin); the first is the
    /// default.
    pub fn addresses(self) -> [u8; 2] {
        match self {
            Self::Bme280 => [0x76, 0x77],
            Self::Sht3x => [0x44, 0x45],
        }
    }
}

impl fmt::Display for SensorModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One reading; a quantity the chip does not measure is `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    /// Degrees Celsius.
    pub temperature: Option<f64>,
    /// Relative humidity, percent.
    pub humidity: Option<f64>,
    /// Hectopascals.
    pub pressure: Option<f64>,
}

/// Why a read failed: a short reason (for the metrics) and the details (for the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct SensorError {
    /// A snake_case word: `no_ack`, `bus`, `arbitration_loss`, `overrun`, `io`, `crc`,
    /// `unsupported_chip`, `invalid_data`, `no_calibration`, `delay`.
    pub reason: &'static str,
    /// What happened, in words.
    pub message: String,
}

impl SensorError {
    /// An error for `reason`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// A bus error, its reason taken from the embedded-hal category.
    pub fn bus<E: embedded_hal::i2c::Error + fmt::Display>(error: &E) -> Self {
        let reason = match error.kind() {
            ErrorKind::NoAcknowledge(_) => "no_ack",
            ErrorKind::Bus => "bus",
            ErrorKind::ArbitrationLoss => "arbitration_loss",
            ErrorKind::Overrun => "overrun",
            _ => "io",
        };
        Self::new(reason, format!("I2C transfer failed: {error}"))
    }
}

/// A sensor the poller can read.
///
/// # For implementers
/// Bring the chip up lazily in [`Sensor::read`] (identify, reset, calibrate) and do it again
/// after an error: the chip may have been power-cycled and lost its configuration. Never
/// panic: a chip that answers nonsense is an `Err`.
///
/// # For callers
/// Call [`Sensor::read`] from a blocking thread: drivers wait with `DelayNs` (up to about
/// 50 ms for a BME280 forced measurement).
pub trait Sensor: Send {
    /// Takes one measurement.
    ///
    /// # Errors
    /// The chip did not answer, answered garbage, or failed its checksum.
    fn read(&mut self) -> Result<Reading, SensorError>;
}

/// `DelayNs` on `std::thread::sleep`, for drivers running on a blocking thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDelay;

impl embedded_hal::delay::DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(std::time::Duration::from_nanos(u64::from(ns)));
    }
}
