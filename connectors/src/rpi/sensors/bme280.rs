//! The Bosch BME280 (temperature, pressure, humidity) through the `bme280` 0.5 driver.
//!
//! The driver's `init` checks the chip id (0x60, or 0x58 for the pressure-only BMP280),
//! soft-resets the chip, reads the calibration (26 bytes at 0x88, 7 at 0xE1) and configures
//! oversampling (temperature ×2, pressure ×16, humidity ×1, IIR filter 16). `measure` puts
//! the chip in forced mode, waits 40 ms and reads the 8 data bytes at 0xF7, which it
//! compensates with the datasheet's floating-point formulas.

use bme280::i2c::BME280;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

use super::{Reading, Sensor, SensorError};

/// A BME280 at one address.
pub struct Bme280Sensor<I2C, D> {
    driver: BME280<I2C>,
    delay: D,
    /// False until `init` succeeded, and again after any error.
    ready: bool,
}

impl<I2C, D> std::fmt::Debug for Bme280Sensor<I2C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bme280Sensor")
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl<I2C: I2c, D: DelayNs> Bme280Sensor<I2C, D> {
    /// A sensor at `address` (0x76 or 0x77); nothing is sent before the first read.
    pub fn new(bus: I2C, address: u8, delay: D) -> Self {
        Self {
            driver: BME280::new(bus, address),
            delay,
            ready: false,
        }
    }

    fn try_read(&mut self) -> Result<Reading, bme280::Error<I2C::Error>> {
        if !self.ready {
            self.driver.init(&mut self.delay)?;
            self.ready = true;
        }
        let measured = self.driver.measure(&mut self.delay)?;
        Ok(Reading {
            temperature: Some(f64::from(measured.temperature)),
            humidity: Some(f64::from(measured.humidity)),
            pressure: Some(f64::from(measured.pressure) / 100.0),
        })
    }
}

/// The driver's error as a [`SensorError`].
fn describe<E: embedded_hal::i2c::Error + std::fmt::Display>(
    error: &bme280::Error<E>,
) -> SensorError {
    match error {
        bme280::Error::Bus(bus) => SensorError::bus(bus),
        bme280::Error::CompensationFailed => {
            SensorError::new("invalid_data", "the raw values could not be compensated")
        }
        bme280::Error::InvalidData => {
            SensorError::new("invalid_data", "the chip sent an impossible value")
        }
        bme280::Error::NoCalibrationData => SensorError::new(
            "no_calibration",
            "no calibration data (the chip was not initialised)",
        ),
        bme280::Error::UnsupportedChip => SensorError::new(
            "unsupported_chip",
            "the chip id is neither a BME280's (0x60) nor a BMP280's (0x58): another chip answers at this address",
        ),
        bme280::Error::Delay => SensorError::new("delay", "the delay provider failed"),
    }
}

impl<I2C, D> Sensor for Bme280Sensor<I2C, D>
where
    I2C: I2c + Send,
    I2C::Error: std::fmt::Display,
    D: DelayNs + Send,
{
    fn read(&mut self) -> Result<Reading, SensorError> {
        self.try_read().map_err(|error| {
            // The chip may have been reset or power-cycled: bring it up again next time.
            self.ready = false;
            describe(&error)
        })
    }
}
